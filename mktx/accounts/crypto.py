"""Encryption at rest of the X OAuth tokens (Fernet with FIELD_ENCRYPTION_KEY)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    key = settings.FIELD_ENCRYPTION_KEY.encode()
    try:
        return Fernet(key)
    except ValueError:  # any other string: derive a proper key from it
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key).digest()))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return ""
