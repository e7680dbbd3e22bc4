"""The one outbound path: every DM the service sends (staff reply, campaign, flow step, bot answer, consent and
away messages) leaves through `message_send` (or its batch form, `outbound_batch.OutboundBatch`), which checks the
account, consent and the shared quota (contacts.services.quota), calls X, and records the Message with X's event id.
Nothing is lost silently: a failed send stays visible as `failed`. The rules of a send are public here for the
batch form; the Message's later state changes (X's answer, its echo, reconciliation) are `message_states.py`'s."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from contacts.media import FetchedImage, fetch_image
from contacts.models import Contact, Conversation, Message, MessageDirection, MessageOrigin, MessageStatus
from contacts.services.message_states import message_fail, message_fail_for, message_mark_sent
from contacts.services.quota import QuotaState, quota_error, quota_lock, quota_state
from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import AccountCredentialsUnreadable, account_client, account_revoked
from mktx.api.errors import ApiError, ErrorCode, InvalidInput, RateLimited, TwitterApiError
from mktx.xapi import RateLimit, XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.errors import XBadRequest, api_error_for

__all__ = [  # quota_state and QuotaState live in contacts.services.quota; named here for existing callers
    "Attachment",
    "QuotaState",
    "SendSkipped",
    "message_send",
    "quota_state",
    "system_message_send",
]

logger = logging.getLogger("mktx.outbound")

MAX_TEXT = 10_000


class SendSkipped(ApiError):
    """Not sent, by rule: the contact opted out of marketing, or the account cannot send. Nothing was stored."""

    status_code = 400
    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, message: str, *, reason: str, field: str) -> None:
        super().__init__(message, details={"field": field, "reason": reason})
        self.reason = reason


class UploadedMedia(Protocol):
    """Media ids already uploaded to X for an image URL, per sending account, reused by later sends (a campaign
    run's card image: fetched and uploaded once, not once per recipient)."""

    def get(self, account_id: Any, url: str) -> str | None: ...

    def put(self, account_id: Any, url: str, media_id: str) -> None: ...


@dataclass(frozen=True)
class Attachment:
    url: str
    type: str = "image"
    uploads: UploadedMedia | None = None


def check_sendable(account: Account, contact: Contact, marketing: bool) -> None:
    if account.status != AccountStatus.ACTIVE:
        raise SendSkipped(
            f"The X account @{account.username} is {account.status}: connect it again to send",
            reason="account_inactive",
            field="accountId",
        )
    if marketing and contact.opted_out:
        raise SendSkipped("The contact opted out of marketing messages", reason="opted_out", field="contactId")


def check_content(content: str, attachments: list[Attachment]) -> None:
    if len(content) > MAX_TEXT:
        raise InvalidInput("content", f"at most {MAX_TEXT} characters (X's limit); this is {len(content)}")
    if not content.strip() and not attachments:
        raise InvalidInput("content", "a message needs content or an attachment")
    if len(attachments) > 1:
        raise InvalidInput("attachments", "X allows one attachment per DM")


def sending_client(account: Account) -> Any:
    try:
        return account_client(account)
    except AccountCredentialsUnreadable as exc:
        raise SendSkipped(
            f"The X account @{account.username} cannot send: {exc.message}",
            reason="account_inactive",
            field="accountId",
        ) from exc


def pending_message(
    conversation: Conversation,
    *,
    content: str,
    message_type: str,
    attachments: list[Attachment],
    origin: str,
    sent_by_id: Any,
    idempotency_key: str | None,
    metadata: dict[str, Any] | None,
) -> Message:
    return Message(
        account_id=conversation.account_id,
        conversation=conversation,
        direction=MessageDirection.OUTBOUND,
        origin=origin,
        type=message_type,
        content=content,
        attachments=[{"type": a.type, "url": a.url} for a in attachments],
        metadata=metadata or {},
        is_from_bot=origin == MessageOrigin.BOT,
        sent_by_id=sent_by_id,
        status=MessageStatus.PENDING,
        idempotency_key=idempotency_key,
    )


def _create_pending(*, conversation: Conversation, origin: str, **fields: Any) -> Message:
    """The pending Message, counted in the account's quota, in one transaction under the quota row's lock: the caps
    are checked on the locked row, so two processes never both pass one. Raises RateLimited naming the cap, or the
    IntegrityError of an idempotency key already used (nothing is stored then)."""
    with transaction.atomic():
        quota = quota_lock(conversation.account_id)
        state = quota.state()
        blocked = state.blocking(origin)
        if blocked is not None:
            raise quota_error(state, *blocked)
        message = pending_message(conversation, origin=origin, **fields)  # the fields of `pending_message`
        message.save(force_insert=True)
        quota.add(origin=origin, at=message.created_at)
        quota.save()
        conversations_outbound_added([conversation.pk], message.created_at)
    return message


def _api_error_for_send(exc: XError) -> ApiError:
    if isinstance(exc, XRateLimited):
        error = api_error_for(exc, action="Sending the DM")
        error.details["reason"] = "x_rate_limited"
        return error
    if isinstance(exc, XForbidden):
        return TwitterApiError(
            f"X refused the DM: {exc.message}",
            status_code=400,
            details={"reason": exc.message, "xStatus": exc.status, "xCode": exc.code},
        )
    return api_error_for(exc, action="Sending the DM")


def reusable_media(account: Account, attachments: list[Attachment]) -> str | None:
    first = attachments[0] if attachments else None
    return first.uploads.get(account.pk, first.url) if first is not None and first.uploads is not None else None


def _upload(client: Any, account: Account, attachment: Attachment, image: FetchedImage) -> str:
    media_id = str(client.upload_media(image.data, image.content_type, image.filename))
    if attachment.uploads is not None:
        attachment.uploads.put(account.pk, attachment.url, media_id)
    return media_id


def refetch_image(message: Message, attachment: Attachment) -> FetchedImage:
    """The image, fetched after the message was stored: a fetch that fails leaves the message `failed`."""
    try:
        return fetch_image(attachment.url, "attachments[0].url")
    except ApiError as exc:
        message_fail(message, "MediaUnavailable", exc.message)
        raise


def _existing(account: Account, idempotency_key: str | None) -> Message | None:
    if not idempotency_key:
        return None
    return Message.objects.filter(account=account, idempotency_key=idempotency_key).first()


def message_send(
    *,
    conversation: Conversation,
    content: str,
    origin: str,
    message_type: str = "text",
    attachments: list[Attachment] | None = None,
    sent_by_id: Any = None,
    marketing: bool = False,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    on_rate_limit: Callable[[RateLimit], None] | None = None,
) -> Message:
    """Send a DM in `conversation` (its account and contact loaded: select_related); the stored Message. Raises an
    ApiError the API can answer as it is; a quota cap reached is RateLimited with `details.reason` (`daily_quota`,
    `reply_reserve`, `campaign_daily_limit`) and `resetAt`.

    A message with the `idempotency_key` already stored is answered as it is (never sent twice): a text DM inserts
    first and takes the unique key's conflict as "already there", so a new send costs no lookup. `on_rate_limit`
    hears X's rate-limit headers of the send (a success, or an error answer that carried them), once the outcome is
    recorded."""
    attachments = attachments or []
    account, contact = conversation.account, conversation.contact
    if attachments and (existing := _existing(account, idempotency_key)) is not None:
        return existing  # before fetching the image again
    try:
        check_sendable(account, contact, marketing)
    except SendSkipped:
        if (existing := _existing(account, idempotency_key)) is not None:
            return existing
        raise
    check_content(content, attachments)
    reused = reusable_media(account, attachments)
    images = [] if reused else [fetch_image(a.url, f"attachments[{i}].url") for i, a in enumerate(attachments)]
    client = sending_client(account)  # before anything is stored: unreadable tokens stop the account

    try:
        message = _create_pending(
            conversation=conversation,
            content=content,
            message_type=message_type,
            attachments=attachments,
            origin=origin,
            sent_by_id=sent_by_id,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
    except (IntegrityError, RateLimited):  # the key's message is there already (or, with a cap reached, may be)
        if (existing := _existing(account, idempotency_key)) is not None:
            return existing
        raise
    heard: list[RateLimit] = []
    try:
        sent = send_to_x(client, account, contact, message, content, attachments, images, reused, heard.append)
    except XError as exc:
        message_fail_for(message, exc)
        logger.warning("DM %s to %s failed: %s", message.pk, contact.twitter_user_id, exc.message)
        if isinstance(exc, XInvalidToken):
            account_revoked(twitter_user_id=account.twitter_user_id, reason="X refused the account's token")
        _rate_limit_report(on_rate_limit, heard)
        raise _api_error_for_send(exc) from exc
    message_mark_sent(message=message, dm_event_id=sent.dm_event_id, at=timezone.now(), contact_id=contact.pk)
    _rate_limit_report(on_rate_limit, heard)
    return message


def send_to_x(
    client: Any,
    account: Account,
    contact: Contact,
    message: Message,
    content: str,
    attachments: list[Attachment],
    images: list[FetchedImage],
    reused: str | None,
    heard: Callable[[RateLimit], None],
) -> Any:
    media_id = reused or (_upload(client, account, attachments[0], images[0]) if images else None)
    try:
        return client.send_dm(contact.twitter_user_id, text=content or None, media_id=media_id, on_rate_limit=heard)
    except XBadRequest:
        if not reused:
            raise
        # X no longer takes the reused media id (it keeps one 24 hours): fetch and upload again, once
        media_id = _upload(client, account, attachments[0], refetch_image(message, attachments[0]))
        return client.send_dm(contact.twitter_user_id, text=content or None, media_id=media_id, on_rate_limit=heard)


def _rate_limit_report(on_rate_limit: Callable[[RateLimit], None] | None, heard: list[RateLimit]) -> None:
    if on_rate_limit is not None and heard:
        on_rate_limit(heard[-1])


def system_message_send(*, conversation_id: Any, text: str, idempotency_key: str) -> str:
    """A consent confirmation or an away message. The idempotency key makes a second run a no-op."""
    conversation = Conversation.objects.select_related("account", "contact").filter(pk=conversation_id).first()
    if conversation is None:
        return "conversation gone"
    try:
        message = message_send(
            conversation=conversation, content=text, origin=MessageOrigin.SYSTEM, idempotency_key=idempotency_key
        )
    except ApiError as exc:  # stored as failed where it got that far; nothing to retry blindly
        logger.warning("system message %s not sent: %s", idempotency_key, exc.message)
        return f"not sent: {exc.message}"
    return str(message.status)


def _by_count(conversation_ids: list[Any]) -> dict[int, list[Any]]:
    """The conversations (an id once per message) grouped by how many of the messages each has."""
    counts = Counter(conversation_ids)
    by_count: dict[int, list[Any]] = {}
    for conversation_id, n in counts.items():
        by_count.setdefault(n, []).append(conversation_id)
    return by_count


def conversations_outbound_added(conversation_ids: list[Any], at: datetime) -> None:
    """conversation_message_added(inbound=False) for the conversations of new outbound messages (an id once per
    message), in one UPDATE per distinct count (a single one, as a rule) instead of two per message."""
    for n, ids in _by_count(conversation_ids).items():
        Conversation.objects.filter(pk__in=ids).update(
            message_count=F("message_count") + n,
            last_message_at=Case(When(last_message_at__lt=at, then=Value(at)), default=F("last_message_at")),
        )


def conversations_outbound_withdrawn(conversation_ids: list[Any]) -> None:
    """Outbound messages deleted before they were sent: uncounted (their `last_message_at` stays: the latest
    activity's time, at most the moment they were stored)."""
    for n, ids in _by_count(conversation_ids).items():
        Conversation.objects.filter(pk__in=ids).update(message_count=F("message_count") - n)
