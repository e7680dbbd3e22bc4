"""Connecting, configuring and disconnecting X accounts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mktx.accounts.crypto import UndecryptableToken, decrypt, encrypt, rotate
from mktx.accounts.models import Account, AccountStatus
from mktx.api.errors import DuplicateResource, InvalidInput
from mktx.xapi import XAppClient, XBadRequest, XClient, XError, XInvalidToken
from mktx.xapi.errors import api_error_for

logger = logging.getLogger("mktx.accounts")

WEBHOOK_PATH = "/api/v1/mkt-x/webhooks/twitter"


def webhook_url() -> str:
    return settings.MKTX_PUBLIC_URL + WEBHOOK_PATH


UNREADABLE_CREDENTIALS = "stored credentials cannot be decrypted; reconnect the account"


class AccountCredentialsUnreadable(XError):
    """The account's stored tokens cannot be decrypted with the configured keys. Raised before any call to X (so
    callers that handle a failed X call handle it too), and not an XInvalidToken: X revoked nothing."""


def account_client(account: Account) -> XClient:
    """An X client signed with the account's own tokens. Tokens no key decrypts put the account in `error` with
    the reason and raise AccountCredentialsUnreadable."""
    try:
        token = decrypt(account.oauth_token_encrypted)
        secret = decrypt(account.oauth_token_secret_encrypted)
    except UndecryptableToken:
        _mark_unreadable(account)
        raise AccountCredentialsUnreadable(UNREADABLE_CREDENTIALS) from None
    return XClient(token, secret, rate_key=str(account.id))


def _mark_unreadable(account: Account) -> None:
    logger.error("account %s (@%s): %s", account.id, account.username, UNREADABLE_CREDENTIALS)
    Account.objects.filter(pk=account.pk).exclude(status=AccountStatus.INACTIVE).update(
        status=AccountStatus.ERROR, status_reason=UNREADABLE_CREDENTIALS, updated_at=timezone.now()
    )
    if account.status != AccountStatus.INACTIVE:
        account.status, account.status_reason = AccountStatus.ERROR, UNREADABLE_CREDENTIALS


def account_tokens_rotate() -> tuple[int, int]:
    """Re-encrypt every stored token with the newest of FIELD_ENCRYPTION_KEYS; (rotated, unreadable) accounts.
    An account whose tokens no key decrypts is put in `error`. Safe to run twice, and beside live traffic: a row
    is only rewritten while it still holds the ciphertext that was read."""
    rotated = unreadable = 0
    stored = Account.objects.exclude(oauth_token_encrypted="", oauth_token_secret_encrypted="")
    for account in stored.only("id", "username", "status", "oauth_token_encrypted", "oauth_token_secret_encrypted"):
        try:
            token, secret = rotate(account.oauth_token_encrypted), rotate(account.oauth_token_secret_encrypted)
        except UndecryptableToken:
            _mark_unreadable(account)
            unreadable += 1
            continue
        rotated += Account.objects.filter(
            pk=account.pk,
            oauth_token_encrypted=account.oauth_token_encrypted,
            oauth_token_secret_encrypted=account.oauth_token_secret_encrypted,
        ).update(oauth_token_encrypted=token, oauth_token_secret_encrypted=secret)
    return rotated, unreadable


def webhook_ensure() -> str:
    """The id of the service's webhook at X, registering it (X runs a CRC check against it) when missing."""
    app = XAppClient()
    url = webhook_url()
    for webhook in app.list_webhooks():
        if webhook.get("url") == url:
            return str(webhook["id"])
    return str(app.register_webhook(url)["id"])


def account_connect(*, merchant_id: uuid.UUID, oauth_token: str, oauth_token_secret: str) -> Account:
    """Verify the tokens with X, subscribe the account to the service's webhook, and store it (reactivating a
    disconnected one). Nothing is stored when any X step fails."""
    client = XClient(oauth_token, oauth_token_secret)
    try:
        me = client.get_me()
    except XInvalidToken:
        raise InvalidInput("oauthToken", "Invalid OAuth credentials: X refused these tokens") from None
    except XError as exc:
        raise api_error_for(exc, action="Verifying the tokens") from exc

    if Account.objects.filter(twitter_user_id=me.id, status=AccountStatus.ACTIVE).exists():
        raise DuplicateResource(f"The X account @{me.username} is already connected", details={"twitterUserId": me.id})

    try:
        webhook_id = webhook_ensure()
        client.subscribe(webhook_id)
    except XError as exc:
        raise api_error_for(exc, action="Subscribing the account to the webhook") from exc

    values: dict[str, Any] = {
        "username": me.username,
        "display_name": me.name,
        "profile_image_url": me.profile_image_url,
        "status": AccountStatus.ACTIVE,
        "status_reason": "",
        "webhook_id": webhook_id,
        "connected_at": timezone.now(),
        "disconnected_at": None,
        "oauth_token_encrypted": encrypt(oauth_token),
        "oauth_token_secret_encrypted": encrypt(oauth_token_secret),
    }
    try:
        with transaction.atomic():
            account, _ = Account.objects.update_or_create(
                merchant_id=merchant_id, twitter_user_id=me.id, defaults=values
            )
    except IntegrityError:  # another merchant connected it a moment ago
        raise DuplicateResource(
            f"The X account @{me.username} is already connected", details={"twitterUserId": me.id}
        ) from None
    logger.info("account %s (@%s) connected for merchant %s", account.id, me.username, merchant_id)
    return account


def account_disconnect(*, account: Account) -> Account:
    """Unsubscribe, invalidate the token at X, wipe it here and keep the history. Idempotent.

    A token X already refuses is as good as invalidated; any other X failure leaves the account as it was."""
    if account.status == AccountStatus.INACTIVE and not account.oauth_token_encrypted:
        return account
    try:
        if account.webhook_id:
            with suppress(XBadRequest):  # the subscription or the webhook is gone already
                XAppClient().unsubscribe(account.webhook_id, account.twitter_user_id)
        if account.oauth_token_encrypted:
            # refused already: as good as invalidated; unreadable here: X cannot be asked, and this service can
            # never use it again
            with suppress(XInvalidToken, AccountCredentialsUnreadable):
                account_client(account).invalidate_token()
    except XError as exc:
        raise api_error_for(exc, action="Disconnecting the account") from exc
    now = timezone.now()
    Account.objects.filter(pk=account.pk).update(
        status=AccountStatus.INACTIVE,
        status_reason="disconnected",
        disconnected_at=now,
        oauth_token_encrypted="",
        oauth_token_secret_encrypted="",
        updated_at=now,
    )
    account.refresh_from_db()
    logger.info("account %s (@%s) disconnected", account.id, account.username)
    return account


SETTINGS_FIELDS = ("auto_reply_enabled", "business_hours", "away_message", "opt_out_keywords")


def account_settings_update(*, account: Account, changes: Mapping[str, Any]) -> Account:
    """Partial update of the account's settings: only the keys given change (`business_hours=None` clears)."""
    fields = [name for name in SETTINGS_FIELDS if name in changes]
    for name in fields:
        value = changes[name]
        setattr(account, name, dict(value or {}) if name == "business_hours" else value)
    account.save(update_fields=[*fields, "updated_at"])
    return account


def account_revoked(*, twitter_user_id: str, reason: str = "access revoked by the user at X") -> int:
    """The user de-authorised the app at X: the account stops working until it is connected again."""
    return Account.objects.filter(twitter_user_id=twitter_user_id, status=AccountStatus.ACTIVE).update(
        status=AccountStatus.ERROR, status_reason=reason, updated_at=timezone.now()
    )
