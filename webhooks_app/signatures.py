"""X's webhook signatures and CRC answers: HMAC-SHA256 with the consumer secret, base64."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

CRC_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{16,128}")


def sign(secret: str, message: bytes) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def is_valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def crc_response_token(secret: str, crc_token: str) -> str | None:
    """The CRC answer, only for token-shaped input (else the endpoint is a signing oracle)."""
    if not CRC_TOKEN.fullmatch(crc_token):
        return None
    return sign(secret, crc_token.encode())
