"""Issuing and reading JWTs. Access tokens carry `merchant_id`, `user_id` and `role` (CONTRACT.md), and ours carry
`iss` = `JWT_ISSUER` so that they can be told from an external IAM's when both are accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from mktx.api.errors import ServiceUnavailable, Unauthorized
from mktx.iam.models import User


def tokens_for_user(user: User) -> dict[str, Any]:
    refresh = RefreshToken.for_user(user)
    refresh["merchant_id"] = str(user.merchant_id)
    refresh["role"] = user.role
    refresh["iss"] = settings.JWT_ISSUER  # copied into the access token
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
    with transaction.atomic():
        _spend(refresh, user)
        return tokens_for_user(user)


def _spend(refresh: RefreshToken, user: User) -> None:
    """Blacklist the token, or refuse it when another request already did: the blacklist row's unique token is the
    lock, so of concurrent refreshes of one token exactly one gets here without an IntegrityError (simplejwt's
    `blacklist()` uses get_or_create, which lets every one of them through)."""
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=refresh["jti"],
        defaults={
            "user": user,
            "created_at": timezone.now(),
            "token": str(refresh),
            "expires_at": datetime_from_epoch(refresh["exp"]),
        },
    )
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        raise Unauthorized("Invalid or expired refresh token") from None


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]
    issued_here: bool  # signed by this service: its user_id must name a user stored here


def _candidate_keys() -> list[tuple[str, bool]]:
    """The keys to verify with, each with whether a token it verifies is ours whatever its `iss` says."""
    external = settings.JWT_VERIFYING_KEY
    if settings.JWT_ALGORITHM.startswith("RS"):
        return [(external, False)]
    keys = [(settings.JWT_SIGNING_KEY, not external or external != settings.JWT_SIGNING_KEY)]
    if external and external != settings.JWT_SIGNING_KEY:
        keys.append((external, False))
    return keys


def verify_access_token(raw: str) -> VerifiedToken:
    """The verified claims of an access token, ours or an external IAM's, and whether it is ours; raises
    Unauthorized otherwise. Only the configured algorithm is accepted, so `alg: none` and algorithm-confusion
    tokens fail. With no external key (`JWT_VERIFYING_KEY`) configured every token is ours; with one, a token is
    ours when our own distinct HS key verifies it or it carries our issuer."""
    error: Unauthorized | None = None
    for key, ours in _candidate_keys():
        try:
            claims = _decode(raw, key)
        except Unauthorized as exc:
            if error is None or error.message == "Invalid token":  # keep the key that knew the signature
                error = exc
            continue
        issued_here = ours or not settings.JWT_VERIFYING_KEY or claims.get("iss") == settings.JWT_ISSUER
        return VerifiedToken(claims=claims, issued_here=issued_here)
    raise error or Unauthorized("Invalid token")


def _decode(raw: str, key: str) -> dict[str, Any]:
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
