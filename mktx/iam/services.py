"""Writes of merchants and users. The management commands, the admin and the tests call these."""

from __future__ import annotations

import uuid

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from mktx.api.errors import DuplicateResource, InvalidInput, NotFoundError
from mktx.iam.models import Merchant, Role, User, normalize_email


def _clean_email(email: str) -> str:
    email = normalize_email(email)
    try:
        validate_email(email)
    except DjangoValidationError:
        raise InvalidInput("email", "is not a valid email address") from None
    return email


def _check_password(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise InvalidInput("password", " ".join(exc.messages)) from None


def user_create(*, merchant: Merchant, email: str, password: str, role: str = Role.AGENT, name: str = "") -> User:
    email = _clean_email(email)
    if role not in Role.values:
        raise InvalidInput("role", f"must be one of {', '.join(Role.values)}")
    user = User(email=email, merchant=merchant, role=role, name=name.strip())
    _check_password(password, user)
    if User.objects.filter(email=email).exists():
        raise DuplicateResource(f"A user with the email {email} already exists", details={"field": "email"})
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise DuplicateResource(f"A user with the email {email} already exists", details={"field": "email"}) from None
    return user


@transaction.atomic
def merchant_create(*, name: str, email: str, password: str, role: str = Role.OWNER) -> tuple[Merchant, User]:
    """A merchant with its first user."""
    name = name.strip()
    if not name:
        raise InvalidInput("name", "must not be blank")
    merchant = Merchant.objects.create(name=name)
    user = user_create(merchant=merchant, email=email, password=password, role=role)
    return merchant, user


def merchant_user_add(
    *, merchant_id: uuid.UUID | str, email: str, password: str, role: str = Role.AGENT, name: str = ""
) -> User:
    try:
        merchant = Merchant.objects.get(pk=merchant_id)
    except (Merchant.DoesNotExist, DjangoValidationError, ValueError):
        raise NotFoundError(f"Merchant {merchant_id} not found", details={"field": "merchantId"}) from None
    return user_create(merchant=merchant, email=email, password=password, role=role, name=name)


@transaction.atomic
def demo_merchant_ensure(*, email: str, password: str, merchant_name: str = "GoodGo Shop") -> tuple[Merchant, User]:
    """The development demo: a merchant and its owner, who may also use the back office. Idempotent."""
    email = _clean_email(email)
    user = User.objects.select_related("merchant").filter(email=email).first()
    if user is None:
        merchant = Merchant.objects.create(name=merchant_name)
        user = User(email=email, merchant=merchant, role=Role.OWNER, name="Demo Owner")
    elif user.merchant is None:
        user.merchant = Merchant.objects.create(name=merchant_name)
    user.role = Role.OWNER
    user.is_active = user.is_staff = user.is_superuser = True
    if not user.check_password(password):
        user.set_password(password)
    user.save()
    assert user.merchant is not None
    return user.merchant, user
