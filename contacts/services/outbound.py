"""The one outbound path: every DM the service sends (staff reply, campaign, flow step, bot answer, consent and
away messages) leaves through `message_send`, which checks the account, consent and the shared quota
(contacts.services.quota), calls X, and records the Message with X's event id. Nothing is lost silently: a failed
send stays visible as `failed`. Every Message state change after the send is here too: `message_mark_sent` (the
send's answer, X's echo), `message_found_at_x` (reconciling an unclear send against X's DM events) and
`message_mark_lost` (a worker that died before X answered)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contacts.media import FetchedImage, fetch_image
from contacts.models import Contact, Conversation, Message, MessageDirection, MessageOrigin, MessageStatus
from contacts.services.contacts import contact_interaction_record, contacts_messages_sent
from contacts.services.quota import (
    QuotaState,
    quota_count,
    quota_error,
    quota_lock,
    quota_state,
    quotas_lock,
    quotas_save,
)
from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import AccountCredentialsUnreadable, account_client, account_revoked
from mktx.api.errors import ApiError, ErrorCode, InvalidInput, RateLimited, TwitterApiError
from mktx.bulk import values_update
from mktx.xapi import RateLimit, XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.errors import XBadRequest, api_error_for

__all__ = [  # quota_state and QuotaState live in contacts.services.quota; named here for existing callers
    "Attachment",
    "OutboundBatch",
    "OutboundDM",
    "QuotaState",
    "SendSkipped",
    "message_found_at_x",
    "message_mark_lost",
    "message_mark_sent",
    "message_send",
    "quota_state",
    "system_message_send",
]

logger = logging.getLogger("mktx.outbound")

MAX_TEXT = 10_000
RESPONSE_ORIGINS = (MessageOrigin.STAFF, MessageOrigin.BOT, MessageOrigin.X_APP)
FOUND_AT_X_SLACK = timedelta(seconds=5)  # X's clock against ours: a DM at X up to 5 s before the Message was stored


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


def _check_sendable(account: Account, contact: Contact, marketing: bool) -> None:
    if account.status != AccountStatus.ACTIVE:
        raise SendSkipped(
            f"The X account @{account.username} is {account.status}: connect it again to send",
            reason="account_inactive",
            field="accountId",
        )
    if marketing and contact.opted_out:
        raise SendSkipped("The contact opted out of marketing messages", reason="opted_out", field="contactId")


def _check_content(content: str, attachments: list[Attachment]) -> None:
    if len(content) > MAX_TEXT:
        raise InvalidInput("content", f"at most {MAX_TEXT} characters (X's limit); this is {len(content)}")
    if not content.strip() and not attachments:
        raise InvalidInput("content", "a message needs content or an attachment")
    if len(attachments) > 1:
        raise InvalidInput("attachments", "X allows one attachment per DM")


def _client(account: Account) -> Any:
    try:
        return account_client(account)
    except AccountCredentialsUnreadable as exc:
        raise SendSkipped(
            f"The X account @{account.username} cannot send: {exc.message}",
            reason="account_inactive",
            field="accountId",
        ) from exc


def _pending(
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
        message = _pending(conversation, origin=origin, **fields)  # the fields of `_pending`
        message.save(force_insert=True)
        quota.add(origin=origin, at=message.created_at)
        quota.save()
        _conversations_outbound_added([conversation.pk], message.created_at)
    return message


def message_mark_sent(*, message: Message, dm_event_id: str, at: datetime, contact_id: Any = None) -> bool:
    """The transition to `sent`, done once (by the send, by X's echo or by reconciliation, whichever comes first):
    the counters move with it. A `failed` message that X had sent after all counts in the quota again. Answers
    whether this call made the transition. `contact_id` spares a read when the caller has it."""
    fields = {"status": MessageStatus.SENT, "twitter_message_id": dm_event_id, "sent_at": at}
    moved = Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(**fields)
    if not moved:
        with transaction.atomic():
            moved = Message.objects.filter(pk=message.pk, status=MessageStatus.FAILED).update(
                **fields, error_code="", error_detail=""
            )
            if moved:
                quota_count(message=message)
        if not moved:
            return False
        message.error_code = message.error_detail = ""
    message.status, message.twitter_message_id, message.sent_at = MessageStatus.SENT, dm_event_id, at
    if message.origin not in RESPONSE_ORIGINS:  # only a reply ends the contact's wait for one
        if contact_id is None:
            contact_id = Conversation.objects.filter(pk=message.conversation_id).values_list("contact_id").first()
            contact_id = contact_id[0] if contact_id else None
        if contact_id is not None:
            contact_interaction_record(contact_id=contact_id, at=at, messages_sent=1)
        return True
    conversation = Conversation.objects.filter(pk=message.conversation_id).values("contact_id", "awaiting_reply_since")
    row = conversation.first()
    if row is None:
        return True
    counters = {"messages_sent": 1}
    waited = row["awaiting_reply_since"]
    if waited is not None:
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


def _message_fail(message: Message, code: str, detail: str) -> bool:
    """pending -> failed, giving the message's quota count back, in one transaction; whether it moved."""
    code, detail = code[:40], detail[:500]
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(
            status=MessageStatus.FAILED, error_code=code, error_detail=detail
        )
        if moved:
            quota_count(message=message, delta=-1)
    if moved:
        message.status, message.error_code, message.error_detail = MessageStatus.FAILED, code, detail
    return bool(moved)


def _mark_failed(message: Message, exc: XError) -> None:
    code = type(exc).__name__.removeprefix("X")
    detail = f"{exc.message} (X status {exc.status}, code {exc.code})" if exc.status else exc.message
    _message_fail(message, code, detail)


def message_mark_lost(*, message: Message, detail: str) -> None:
    """A pending message whose worker stopped before X answered (and that X does not have: see
    `message_found_at_x`): failed with error_code `Lost`, its quota count given back. No-op unless pending."""
    _message_fail(message, "Lost", detail)


def _event_text(event: dict[str, Any]) -> str:
    """A DM event's text with X's t.co links expanded from its entities, when it carries them."""
    text = str(event.get("text") or "")
    urls = (event.get("entities") or {}).get("urls") or event.get("urls") or []
    for url in urls:
        if isinstance(url, dict) and url.get("url") and url.get("expanded_url"):
            text = text.replace(str(url["url"]), str(url["expanded_url"]))
    return text


def _conversation_with_parties(message: Message) -> Conversation:
    conversation: Conversation | None = None
    if Message.conversation.is_cached(message):
        conversation = message.conversation
    if conversation is None or not (
        Conversation.account.is_cached(conversation) and Conversation.contact.is_cached(conversation)
    ):
        conversation = Conversation.objects.select_related("account", "contact").get(pk=message.conversation_id)
    return conversation


def message_found_at_x(*, message: Message) -> bool:
    """Did X send this message after all (a timeout, a 5xx, a worker that stopped mid-send)? Looks at the
    conversation's DM events at X for one sent by the account with the message's text, created no earlier than 5 s
    before the message was stored, and not already recorded on another message. Found: the message is marked sent
    with that event id (`message_mark_sent`: counters once; a `failed` message counts in the quota again) -> True.
    Not found -> False. A message already `sent` -> True without asking X. X unreachable (or the account's tokens
    unreadable): raises the XError, so that the caller never resends blind."""
    if message.status == MessageStatus.SENT:
        return True
    conversation = _conversation_with_parties(message)
    account, contact = conversation.account, conversation.contact
    since = message.created_at - FOUND_AT_X_SLACK
    candidates: list[tuple[datetime, str]] = []
    for event in account_client(account).dm_events(contact.twitter_user_id):
        created = parse_datetime(str(event.get("created_at") or ""))
        if str(event.get("sender_id")) != account.twitter_user_id or created is None or created < since:
            continue
        if _event_text(event) == message.content or event.get("text") == message.content:
            candidates.append((created, str(event["id"])))
    if not candidates:
        return False
    taken = set(
        Message.objects.filter(account_id=message.account_id, twitter_message_id__in=[c[1] for c in candidates])
        .exclude(pk=message.pk)
        .values_list("twitter_message_id", flat=True)
    )
    free = sorted(c for c in candidates if c[1] not in taken)  # the earliest after it was stored is its own
    if not free:
        return False
    if message_mark_sent(message=message, dm_event_id=free[0][1], at=timezone.now(), contact_id=contact.pk):
        return True
    message.refresh_from_db(fields=["status", "twitter_message_id", "sent_at"])  # recorded meanwhile (X's echo)?
    return message.status == MessageStatus.SENT


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
    """The image, fetched after the message was stored: a fetch that fails leaves the message `failed`."""
    try:
        return fetch_image(attachment.url, "attachments[0].url")
    except ApiError as exc:
        _message_fail(message, "MediaUnavailable", exc.message)
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
        _check_sendable(account, contact, marketing)
    except SendSkipped:
        if (existing := _existing(account, idempotency_key)) is not None:
            return existing
        raise
    _check_content(content, attachments)
    reused = _reusable_media(account, attachments)
    images = [] if reused else [fetch_image(a.url, f"attachments[{i}].url") for i, a in enumerate(attachments)]
    client = _client(account)  # before anything is stored: unreadable tokens stop the account

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
        sent = _send_to_x(client, account, contact, message, content, attachments, images, reused, heard.append)
    except XError as exc:
        _mark_failed(message, exc)
        logger.warning("DM %s to %s failed: %s", message.pk, contact.twitter_user_id, exc.message)
        if isinstance(exc, XInvalidToken):
            account_revoked(twitter_user_id=account.twitter_user_id, reason="X refused the account's token")
        _rate_limit_report(on_rate_limit, heard)
        raise _api_error_for_send(exc) from exc
    message_mark_sent(message=message, dm_event_id=sent.dm_event_id, at=timezone.now(), contact_id=contact.pk)
    _rate_limit_report(on_rate_limit, heard)
    return message


def _send_to_x(
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
        media_id = _upload(client, account, attachments[0], _refetch(message, attachments[0]))
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


# --- many DMs at once ---------------------------------------------------------------------------------------------


@dataclass
class OutboundDM:
    """One DM of an `OutboundBatch`: what and where (the conversation with its account and contact loaded), and,
    once the batch has gone over it, what became of it. `refusal` is why it was not stored (the rules of
    `message_send`: SendSkipped, RateLimited naming the cap, InvalidInput); `message` is its stored Message (an
    earlier one when the idempotency key had been used: then it is not sent again); `error` is X's refusal or
    failure (the message is `failed`), and `dm_event_id` set once X took it."""

    conversation: Conversation
    content: str
    origin: str
    idempotency_key: str
    message_type: str = "text"
    attachments: list[Attachment] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    marketing: bool = False
    refusal: ApiError | None = None
    message: Message | None = None
    error: XError | ApiError | None = None
    dm_event_id: str = ""
    sent_at: datetime | None = None
    rate_limit: RateLimit | None = None
    attempted: bool = False  # the call to X began (an outcome not heard then is X's to tell: it stays pending)
    earlier: bool = False  # `message` is the key's earlier message, not one stored by this batch

    @property
    def sendable(self) -> bool:
        """Stored by this batch and not yet sent: `OutboundBatch.send` may go."""
        return self.message is not None and not self.earlier and not self.attempted


class OutboundBatch:
    """Many DMs (a campaign sender's batch, the accounts' turns of one pass) under the rules of `message_send`, at
    the cost of two transactions for all of them instead of two per DM:

    - `prepare()`: the checks of `message_send`, then one transaction that locks each account's quota row,
      applies its caps DM after DM, inserts every pending Message and counts them (quota, conversations);
    - `send(dm)`, DM after DM at whatever pace the caller keeps: the call to X with one client (one kept-alive
      connection) per account; nothing is written;
    - `record()`: one transaction that marks the sent ones `sent` (those X's echo had not marked already) and
      counts them on their contacts, marks X's refusals `failed` (their quota given back), and withdraws what
      was never sent (deleted, uncounted). A DM whose call began without an answer heard stays `pending`: only
      X can tell (`message_found_at_x`).

    A process that dies in between leaves pending Messages, reconciled against X as any unclear send is. Only
    for origins that answer no one (campaigns, flows): a staff or bot reply goes through `message_send`, which
    ends the contact's wait for an answer."""

    def __init__(self, dms: list[OutboundDM]) -> None:
        assert all(dm.origin not in RESPONSE_ORIGINS for dm in dms), "replies go through message_send"
        self.dms = dms
        self._clients: dict[Any, Any] = {}

    def prepare(self) -> None:
        checked = [dm for dm in self.dms if self._check(dm)]
        for _ in range(2):
            try:
                self._store(checked)
                return
            except IntegrityError:  # a key stored concurrently (never by a claim of our own): look again
                for dm in checked:
                    dm.message, dm.refusal, dm.earlier = None, None, False
        raise RuntimeError("idempotency keys kept colliding")

    def _check(self, dm: OutboundDM) -> bool:
        account, contact = dm.conversation.account, dm.conversation.contact
        try:
            _check_sendable(account, contact, dm.marketing)
            _check_content(dm.content, dm.attachments)
            if account.pk not in self._clients:
                self._clients[account.pk] = _client(account)
        except ApiError as exc:
            dm.refusal = exc
            return False
        return True

    def _store(self, dms: list[OutboundDM]) -> None:
        by_account: dict[Any, list[OutboundDM]] = {}
        for dm in dms:
            by_account.setdefault(dm.conversation.account_id, []).append(dm)
        with transaction.atomic():
            earlier = {
                (m.account_id, m.idempotency_key): m
                for m in Message.objects.filter(
                    account_id__in=list(by_account), idempotency_key__in=[dm.idempotency_key for dm in dms]
                )
            }
            fresh: list[Message] = []
            quotas = quotas_lock(list(by_account))
            for account_id, quota in quotas.items():
                for dm in by_account[account_id]:
                    if (found := earlier.get((account_id, dm.idempotency_key))) is not None:
                        dm.message, dm.earlier = found, True
                        continue
                    state = quota.state()
                    if (blocked := state.blocking(dm.origin)) is not None:
                        dm.refusal = quota_error(state, *blocked)
                        continue
                    dm.message = _pending(
                        dm.conversation,
                        content=dm.content,
                        message_type=dm.message_type,
                        attachments=dm.attachments,
                        origin=dm.origin,
                        sent_by_id=None,
                        idempotency_key=dm.idempotency_key,
                        metadata=dm.metadata,
                    )
                    fresh.append(dm.message)
                    quota.add(origin=dm.origin, at=quota.now)
            quotas_save(list(quotas.values()))
            Message.objects.bulk_create(fresh)
            _conversations_outbound_added([m.conversation_id for m in fresh], timezone.now())

    def send(self, dm: OutboundDM) -> None:
        """The call to X for one prepared DM (`dm.sendable`): `dm_event_id` and `sent_at`, or `error`; X's rate
        limit as its answer reported it in `rate_limit`. A token X refuses stops the account (`account_revoked`)."""
        assert dm.sendable and dm.message is not None
        account, contact = dm.conversation.account, dm.conversation.contact
        heard: list[RateLimit] = []
        dm.attempted = True
        client = self._clients[account.pk]
        try:
            # the image is fetched when no earlier DM of the batch has uploaded it (a run's card: once)
            reused = _reusable_media(account, dm.attachments)
            images = [] if reused or not dm.attachments else [_refetch(dm.message, dm.attachments[0])]
            sent = _send_to_x(
                client, account, contact, dm.message, dm.content, dm.attachments, images, reused, heard.append
            )
        except XError as exc:
            dm.error = exc
            logger.warning("DM %s to %s failed: %s", dm.message.pk, contact.twitter_user_id, exc.message)
            if isinstance(exc, XInvalidToken):
                account_revoked(twitter_user_id=account.twitter_user_id, reason="X refused the account's token")
        except ApiError as exc:  # the image could not be fetched: the message is failed already
            dm.error = exc
        else:  # the Message as `record()` will store it
            dm.dm_event_id, dm.sent_at = sent.dm_event_id, timezone.now()
            dm.message.status, dm.message.twitter_message_id = MessageStatus.SENT, dm.dm_event_id
            dm.message.sent_at = dm.sent_at
        dm.rate_limit = heard[-1] if heard else None

    def record(self) -> None:
        """Write every outcome (see the class); once, after the sends."""
        stored = [dm for dm in self.dms if dm.message is not None and not dm.earlier]
        sent = [dm for dm in stored if dm.dm_event_id]
        failed = [dm for dm in stored if dm.error is not None and dm.message.status == MessageStatus.PENDING]  # type: ignore[union-attr]
        withdrawn = [dm for dm in stored if not dm.attempted]
        if not (sent or failed or withdrawn):
            return
        with transaction.atomic():
            moved = set(
                values_update(
                    Message,
                    [
                        ("k", Message._meta.pk),
                        ("x_id", Message._meta.get_field("twitter_message_id")),
                        ("at", Message._meta.get_field("sent_at")),
                    ],
                    [(dm.message.pk, dm.dm_event_id, dm.sent_at) for dm in sent],  # type: ignore[union-attr]
                    assignments="status = 'sent', twitter_message_id = v.x_id, sent_at = v.at",
                    where="t.status = 'pending'",
                    returning=True,
                )
            )
            contacts_messages_sent([(dm.conversation.contact_id, dm.sent_at) for dm in sent if dm.message.pk in moved])  # type: ignore[misc, union-attr]
            for dm in failed:
                assert dm.message is not None and dm.error is not None
                if isinstance(dm.error, XError):
                    _mark_failed(dm.message, dm.error)
            if withdrawn:
                self._withdraw(withdrawn)

    def _withdraw(self, dms: list[OutboundDM]) -> None:
        """Pending messages the caller did not send after all: gone, as if never stored."""
        ids = [dm.message.pk for dm in dms]  # type: ignore[union-attr]
        gone = set(Message.objects.filter(pk__in=ids, status=MessageStatus.PENDING).values_list("pk", flat=True))
        Message.objects.filter(pk__in=gone).delete()
        by_account: dict[Any, list[Message]] = {}
        for dm in dms:
            if dm.message is not None and dm.message.pk in gone:
                by_account.setdefault(dm.message.account_id, []).append(dm.message)
                dm.message = None
        quotas = quotas_lock(list(by_account))
        for account_id, quota in quotas.items():
            for message in by_account[account_id]:
                quota.add(origin=message.origin, at=min(message.created_at, quota.now), delta=-1)
        quotas_save(list(quotas.values()))
        per_conversation: dict[Any, int] = {}
        for messages in by_account.values():
            for message in messages:
                per_conversation[message.conversation_id] = per_conversation.get(message.conversation_id, 0) + 1
        for conversation_id, n in per_conversation.items():
            Conversation.objects.filter(pk=conversation_id).update(message_count=F("message_count") - n)


def _conversations_outbound_added(conversation_ids: list[Any], at: datetime) -> None:
    """conversation_message_added(inbound=False) for the conversations of new outbound messages (an id once per
    message), in one UPDATE per distinct count (a single one, as a rule) instead of two per message."""
    counts: dict[Any, int] = {}
    for conversation_id in conversation_ids:
        counts[conversation_id] = counts.get(conversation_id, 0) + 1
    by_count: dict[int, list[Any]] = {}
    for conversation_id, n in counts.items():
        by_count.setdefault(n, []).append(conversation_id)
    for n, ids in by_count.items():
        Conversation.objects.filter(pk__in=ids).update(
            message_count=F("message_count") + n,
            last_message_at=Case(When(last_message_at__lt=at, then=Value(at)), default=F("last_message_at")),
        )
