from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from mktx.api.errors import Unauthorized
from mktx.iam.models import Merchant, Role, User
from mktx.iam.tokens import VerifiedToken, verify_access_token


@dataclass(frozen=True)
class ExternalPrincipal:
    """A user of an external IAM: known by the token's claims only, not stored here."""

    id: str
    merchant_id: uuid.UUID
    role: str
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        return self.id


def _uuid_claim(claims: dict[str, Any], name: str) -> uuid.UUID | None:
    value = claims.get(name)
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Unauthorized(f"Token claim {name} is not a UUID") from None


def principal_from_claims(token: VerifiedToken) -> User | ExternalPrincipal:
    """The stored user a token names, or an external IAM's principal.

    A token issued here must name a stored, active user of its merchant: a user that was deleted or deactivated
    loses access at once, not when the token expires. Only a token of an external IAM (see `verify_access_token`)
    may name a principal not stored here, and then with the token's role.
    """
    claims = token.claims
    merchant_id = _uuid_claim(claims, "merchant_id")
    if merchant_id is None:
        raise Unauthorized("Token has no merchant_id claim")
    user_id = _uuid_claim(claims, "user_id")
    user = User.objects.select_related("merchant").filter(pk=user_id).first() if user_id is not None else None
    if user is not None:
        if user.merchant_id != merchant_id or not user.is_active or not user.merchant.is_active:  # type: ignore[union-attr]
            raise Unauthorized("Token does not match an active user")
        return user
    if token.issued_here:
        raise Unauthorized("Token does not match an active user")
    if not Merchant.objects.filter(pk=merchant_id, is_active=True).exists():
        raise Unauthorized("Token names an unknown merchant")
    role = claims.get("role", Role.AGENT)
    if role not in Role.values:
        raise Unauthorized("Token has an unknown role")
    return ExternalPrincipal(
        id=str(claims.get("user_id") or claims.get("sub") or ""), merchant_id=merchant_id, role=role
    )


class MerchantJWTAuthentication(BaseAuthentication):
    """`Authorization: Bearer <JWT>`, issued here or by an external IAM whose key is `JWT_VERIFYING_KEY`."""

    def authenticate(self, request: Request) -> tuple[User | ExternalPrincipal, dict[str, Any]] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token") from None
        try:
            token = verify_access_token(raw)
            return principal_from_claims(token), token.claims
        except Unauthorized as exc:
            raise AuthenticationFailed(exc.message) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
