"""Encryption at rest of the X OAuth tokens: MultiFernet over FIELD_ENCRYPTION_KEYS, newest first.

New tokens are encrypted with the first key; any key decrypts; `rotate` re-encrypts with the first, so an old key
can be dropped once `manage.py rotate_field_encryption` has run."""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableToken(Exception):
    """A stored token that none of the configured keys decrypts (its key was dropped, or the row is corrupt).

    Never read as an empty token: sent to X, that would look like a revoked account."""


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:  # any other string (a passphrase): derive a proper key from it
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


@functools.cache
def _multi(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def _keys() -> MultiFernet:
    return _multi(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _keys().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(ciphertext: str) -> str:
    """The plaintext; "" when nothing is stored. Raises UndecryptableToken."""
    if not ciphertext:
        return ""
    try:
        return _keys().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise UndecryptableToken("no configured FIELD_ENCRYPTION_KEYS key decrypts this token") from None


def rotate(ciphertext: str) -> str:
    """The same plaintext encrypted with the newest key. Raises UndecryptableToken."""
    if not ciphertext:
        return ""
    try:
        return _keys().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise UndecryptableToken("no configured FIELD_ENCRYPTION_KEYS key decrypts this token") from None
