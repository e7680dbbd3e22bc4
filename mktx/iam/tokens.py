"""Issuing and reading JWTs. Access tokens carry `merchant_id`, `user_id` and `role` (CONTRACT.md)."""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from mktx.api.errors import ServiceUnavailable, Unauthorized
from mktx.iam.models import User


def tokens_for_user(user: User) -> dict[str, Any]:
    refresh = RefreshToken.for_user(user)
    refresh["merchant_id"] = str(user.merchant_id)
    refresh["role"] = user.role
    try:
        access = str(refresh.access_token)
        refresh_text = str(refresh)
    except TokenError as exc:  # an RS key pair without a private signing key configured
        raise ServiceUnavailable(f"This service cannot issue tokens: {exc}") from None
    return {"accessToken": access, "refreshToken": refresh_text, "expiresIn": settings.JWT_ACCESS_TTL}


def tokens_refresh(raw_refresh_token: str) -> dict[str, Any]:
    """New tokens for a valid refresh token, which is spent (blacklisted) in the process."""
    try:
        refresh = RefreshToken(raw_refresh_token)  # type: ignore[arg-type]
    except TokenError:
        raise Unauthorized("Invalid or expired refresh token") from None
    user = (
        User.objects.select_related("merchant")
        .filter(pk=refresh.get("user_id"), is_active=True, merchant__isnull=False, merchant__is_active=True)
        .first()
    )
    if user is None:
        raise Unauthorized("Invalid or expired refresh token")
    refresh.blacklist()
    return tokens_for_user(user)


def decode_access_token(raw: str) -> dict[str, Any]:
    """The verified claims of an access token, ours or an external IAM's; raises Unauthorized otherwise.

    Only the configured algorithm is accepted, so `alg: none` and algorithm-confusion tokens fail.
    """
    key = settings.JWT_VERIFYING_KEY if settings.JWT_ALGORITHM.startswith("RS") else settings.JWT_SIGNING_KEY
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key,
            algorithms=[settings.JWT_ALGORITHM],
            options={"require": ["exp"]},
            leeway=settings.JWT_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    if claims.get("token_type", "access") != "access":
        raise Unauthorized("Not an access token")
    return claims
