"""The one outbound path: every DM the service sends (staff reply, campaign, flow step, bot answer, consent and
away messages) leaves through `message_send`, which checks the account, consent and the shared quota, calls X,
and records the Message with X's event id. Nothing is lost silently: a failed send stays visible as `failed`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from contacts.media import FetchedImage, fetch_image
from contacts.models import Contact, Conversation, Message, MessageDirection, MessageOrigin, MessageStatus
from contacts.services.contacts import contact_interaction_record
from contacts.services.conversations import conversation_message_added
from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import AccountCredentialsUnreadable, account_client, account_revoked
from mktx.api.errors import ApiError, ErrorCode, InvalidInput, RateLimited, TwitterApiError
from mktx.xapi import XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.errors import XBadRequest, api_error_for

logger = logging.getLogger("mktx.outbound")

MAX_TEXT = 10_000
QUOTA_WINDOW = timedelta(hours=24)
RESPONSE_ORIGINS = (MessageOrigin.STAFF, MessageOrigin.BOT, MessageOrigin.X_APP)


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


def quota_state(account_id: Any, now: datetime | None = None) -> tuple[int, datetime | None]:
    """(DMs counted in the rolling 24 h window, when the oldest of them leaves it)."""
    now = now or timezone.now()
    window = Message.objects.filter(
        account_id=account_id,
        direction=MessageDirection.OUTBOUND,
        status__in=[MessageStatus.PENDING, MessageStatus.SENT],
        created_at__gte=now - QUOTA_WINDOW,
    )
    stats = window.aggregate(count=Count("pk"), oldest=Min("created_at"))
    return int(stats["count"]), (stats["oldest"] + QUOTA_WINDOW if stats["oldest"] else None)


def _check_sendable(account: Account, contact: Contact, marketing: bool) -> None:
    if account.status != AccountStatus.ACTIVE:
        raise SendSkipped(
            f"The X account @{account.username} is {account.status}: connect it again to send",
            reason="account_inactive",
            field="accountId",
        )
    if marketing and contact.opted_out:
        raise SendSkipped("The contact opted out of marketing messages", reason="opted_out", field="contactId")


def _quota_error(count: int, reset_at: datetime | None) -> RateLimited:
    reset_at = reset_at or timezone.now() + QUOTA_WINDOW
    retry_after = max(1, int((reset_at - timezone.now()).total_seconds()))
    return RateLimited(
        f"The account's quota of {settings.MKTX_X_DM_DAILY_LIMIT} DMs per 24 hours is used up",
        details={
            "reason": "daily_quota",
            "limit": settings.MKTX_X_DM_DAILY_LIMIT,
            "used": count,
            "resetAt": reset_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "retryAfter": retry_after,
        },
        headers={"Retry-After": str(retry_after)},
    )


def _create_pending(
    *,
    conversation: Conversation,
    content: str,
    message_type: str,
    attachments: list[Attachment],
    origin: str,
    sent_by_id: Any,
    idempotency_key: str | None,
    metadata: dict[str, Any] | None,
) -> Message:
    now = timezone.now()
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=conversation.account_id).first()  # one quota check at a time
        count, reset_at = quota_state(conversation.account_id, now)
        if count >= settings.MKTX_X_DM_DAILY_LIMIT:
            raise _quota_error(count, reset_at)
        message = Message.objects.create(
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
        conversation_message_added(conversation_id=conversation.pk, at=now, inbound=False)
    return message


def message_mark_sent(*, message: Message, dm_event_id: str, at: datetime) -> bool:
    """The transition to `sent`, done once (by the send or by X's echo, whichever comes first): the counters move
    with it. Answers whether this call made the transition."""
    moved = (
        Message.objects.filter(pk=message.pk)
        .exclude(status=MessageStatus.SENT)
        .update(status=MessageStatus.SENT, twitter_message_id=dm_event_id, sent_at=at, error_code="", error_detail="")
    )
    if not moved:
        return False
    message.status, message.twitter_message_id, message.sent_at = MessageStatus.SENT, dm_event_id, at
    conversation = Conversation.objects.filter(pk=message.conversation_id).values("contact_id", "awaiting_reply_since")
    row = conversation.first()
    if row is None:
        return True
    counters = {"messages_sent": 1}
    waited = row["awaiting_reply_since"]
    if waited is not None and message.origin in RESPONSE_ORIGINS:
        answered = Conversation.objects.filter(pk=message.conversation_id, awaiting_reply_since=waited).update(
            awaiting_reply_since=None
        )
        if answered:
            counters["response_time_count"] = 1
            Contact.objects.filter(pk=row["contact_id"]).update(
                response_time_total=F("response_time_total") + max(0, int((at - waited).total_seconds()))
            )
    contact_interaction_record(contact_id=row["contact_id"], at=at, **counters)
    return True


def _mark_failed(message: Message, exc: XError) -> None:
    code = type(exc).__name__.removeprefix("X")
    detail = f"{exc.message} (X status {exc.status}, code {exc.code})" if exc.status else exc.message
    Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(
        status=MessageStatus.FAILED, error_code=code[:40], error_detail=detail[:500]
    )
    message.status, message.error_code, message.error_detail = MessageStatus.FAILED, code[:40], detail[:500]


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


def _reusable_media(account: Account, attachments: list[Attachment]) -> str | None:
    first = attachments[0] if attachments else None
    return first.uploads.get(account.pk, first.url) if first is not None and first.uploads is not None else None


def _upload(client: Any, account: Account, attachment: Attachment, image: FetchedImage) -> str:
    media_id = str(client.upload_media(image.data, image.content_type, image.filename))
    if attachment.uploads is not None:
        attachment.uploads.put(account.pk, attachment.url, media_id)
    return media_id


def _refetch(message: Message, attachment: Attachment) -> FetchedImage:
    """The image again, after the message was stored: a fetch that fails now leaves the message `failed`."""
    try:
        return fetch_image(attachment.url, "attachments[0].url")
    except ApiError as exc:
        Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(
            status=MessageStatus.FAILED, error_code="MediaUnavailable", error_detail=exc.message[:500]
        )
        raise


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
) -> Message:
    """Send a DM in `conversation`; the stored Message. Raises an ApiError the API can answer as it is."""
    attachments = attachments or []
    account, contact = conversation.account, conversation.contact
    if idempotency_key:
        existing = Message.objects.filter(account=account, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    _check_sendable(account, contact, marketing)
    if len(content) > MAX_TEXT:
        raise InvalidInput("content", f"at most {MAX_TEXT} characters (X's limit); this is {len(content)}")
    if not content.strip() and not attachments:
        raise InvalidInput("content", "a message needs content or an attachment")
    if len(attachments) > 1:
        raise InvalidInput("attachments", "X allows one attachment per DM")
    reused = _reusable_media(account, attachments)
    images = [] if reused else [fetch_image(a.url, f"attachments[{i}].url") for i, a in enumerate(attachments)]
    try:
        client = account_client(account)  # before anything is stored: unreadable tokens stop the account
    except AccountCredentialsUnreadable as exc:
        raise SendSkipped(
            f"The X account @{account.username} cannot send: {exc.message}",
            reason="account_inactive",
            field="accountId",
        ) from exc

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
    try:
        media_id = reused or (_upload(client, account, attachments[0], images[0]) if images else None)
        try:
            sent = client.send_dm(contact.twitter_user_id, text=content or None, media_id=media_id)
        except XBadRequest:
            if not reused:
                raise
            # X no longer takes the reused media id (it keeps one 24 hours): fetch and upload again, once
            media_id = _upload(client, account, attachments[0], _refetch(message, attachments[0]))
            sent = client.send_dm(contact.twitter_user_id, text=content or None, media_id=media_id)
    except XError as exc:
        _mark_failed(message, exc)
        logger.warning("DM %s to %s failed: %s", message.pk, contact.twitter_user_id, exc.message)
        if isinstance(exc, XInvalidToken):
            account_revoked(twitter_user_id=account.twitter_user_id, reason="X refused the account's token")
        raise _api_error_for_send(exc) from exc
    message_mark_sent(message=message, dm_event_id=sent.dm_event_id, at=timezone.now())
    return message


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
