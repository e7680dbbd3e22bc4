"""A stored outbound Message's state changes after its send: `message_mark_sent` (the send's answer, X's echo, a
reconciliation: the counters move once), `message_fail` (pending -> failed, its quota count given back),
`message_found_at_x` (did X send an unclear send after all?) and `message_mark_lost` (a worker that died before X
answered)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contacts.models import Contact, Conversation, ConversationResponse, Message, MessageOrigin, MessageStatus
from contacts.services.contacts import contact_interaction_record
from contacts.services.quota import quota_count
from mktx.accounts.services import account_client
from mktx.xapi import XError
from mktx.xapi.links import expanded, without_links

RESPONSE_ORIGINS = (MessageOrigin.STAFF, MessageOrigin.BOT, MessageOrigin.X_APP)  # the origins that answer a contact
FOUND_AT_X_SLACK = timedelta(seconds=5)  # X's clock against ours: a DM at X up to 5 s before the Message was stored
MEDIA_LINK = re.compile(r"\s*https?://t\.co/\w+\s*$")  # the link X appends to a DM's text for its media


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
    conversation = Conversation.objects.filter(pk=message.conversation_id).values(
        "contact_id", "merchant_id", "awaiting_reply_since"
    )
    row = conversation.first()
    if row is None:
        return True
    counters = {"messages_sent": 1}
    waited = row["awaiting_reply_since"]
    if waited is not None:
        seconds = max(0, int((at - waited).total_seconds()))
        with transaction.atomic():
            answered = Conversation.objects.filter(pk=message.conversation_id, awaiting_reply_since=waited).update(
                awaiting_reply_since=None
            )
            if answered:  # this reply ended the wait: the one answer it gets
                ConversationResponse.objects.create(
                    merchant_id=row["merchant_id"],
                    account_id=message.account_id,
                    conversation_id=message.conversation_id,
                    waited_since=waited,
                    answered_at=at,
                    seconds=seconds,
                    responder=message.origin,
                    user_id=message.sent_by_id,
                )
        if answered:
            counters["response_time_count"] = 1
            Contact.objects.filter(pk=row["contact_id"]).update(response_time_total=F("response_time_total") + seconds)
    contact_interaction_record(contact_id=row["contact_id"], at=at, **counters)
    return True


def message_fail(message: Message, code: str, detail: str) -> bool:
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


def message_fail_for(message: Message, exc: XError) -> None:
    code = type(exc).__name__.removeprefix("X")
    detail = f"{exc.message} (X status {exc.status}, code {exc.code})" if exc.status else exc.message
    message_fail(message, code, detail)


def message_mark_lost(*, message: Message, detail: str) -> None:
    """A pending message whose worker stopped before X answered (and that X does not have: see
    `message_found_at_x`): failed with error_code `Lost`, its quota count given back. No-op unless pending."""
    message_fail(message, "Lost", detail)


def _event_text(event: dict[str, Any]) -> str:
    """A DM event's text with X's t.co links expanded from its entities, when it carries them."""
    return expanded(str(event.get("text") or ""), (event.get("entities") or {}).get("urls") or event.get("urls"))


def _same_dm(event: dict[str, Any], content: str) -> bool:
    """Is this DM event at X the message written as `content`? Its text expanded, or, when X's lookup answers the
    wrapped text alone (it has no entities), the same text with every link in the same place."""
    text = _event_text(event)
    if event.get("attachments"):  # X appends a t.co link for the media to the text
        text = MEDIA_LINK.sub("", text)
    return text == content or without_links(text) == without_links(content)


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
    for event in account_client(account).dm_events(contact.twitter_user_id, since=since):
        created = parse_datetime(str(event.get("created_at") or ""))
        if str(event.get("sender_id")) != account.twitter_user_id or created is None or created < since:
            continue
        if _same_dm(event, message.content):
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
