"""What X tells the service happened: DMs in and out, follows, read receipts. Called by the webhook handler
table with plain values; each function is idempotent (replays and duplicate deliveries call it again).

These functions record only and answer what they recorded: who answers an inbound DM (a consent confirmation, a
flow, the chatbot, the away message) is decided in one place, the inbound edge's DM handler."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contacts.models import (
    Contact,
    ContactSource,
    Conversation,
    Message,
    MessageDirection,
    MessageOrigin,
    MessageStatus,
)
from contacts.services.consent import send_system_message_later
from contacts.services.contacts import XProfile, contact_follow_set, contact_interaction_record, contact_upsert_from_x
from contacts.services.conversations import conversation_message_added, conversation_open_for
from contacts.services.message_states import message_mark_sent
from contacts.services.quota import quota_count
from contacts.services.rollup import inbound_counted
from mktx.accounts.business_hours import is_open
from mktx.accounts.models import Account
from mktx.xapi.links import expanded

AWAY_MESSAGE_EVERY = timedelta(hours=12)
RECONCILE_WINDOW = timedelta(hours=24)


def _message_type(attachment: dict[str, Any] | None, quick_reply: dict[str, Any] | None) -> str:
    if attachment:
        return "image"
    if quick_reply:
        return "quick_reply"
    return "text"


def _attachments(attachment: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not attachment:
        return []
    media = attachment.get("media") or {}
    return [{"type": "image", "url": media.get("media_url_https", ""), "mediaId": str(media.get("id_str", ""))}]


@dataclass(frozen=True)
class RecordedDM:
    """A DM dm_record stored (or, for the echo of the service's own send, matched to the message it sent)."""

    message: Message
    contact: Contact
    conversation: Conversation
    inbound: bool  # the contact sent it (not an echo of the account's own DM)
    new_contact: bool  # its contact was created for it


def dm_record(
    *,
    account: Account,
    x_event_id: str,
    sender_id: str,
    recipient_id: str,
    text: str,
    sent_at: datetime,
    profiles: dict[str, XProfile],
    attachment: dict[str, Any] | None = None,
    quick_reply_response: dict[str, Any] | None = None,
    entities: dict[str, Any] | None = None,
) -> RecordedDM | None:
    """A DM between the account and someone: inbound when they sent it, outbound when the account did (an echo of
    the service's own send, or a DM written in X's app). Never stored twice: None when it already was. Records
    only; answering it is the handler's."""
    if Message.objects.filter(account=account, twitter_message_id=x_event_id).exists():
        return None
    if sender_id == account.twitter_user_id:
        text = expanded(text, (entities or {}).get("urls"), drop=_media_link(attachment))
        return _outbound_seen(account, x_event_id, recipient_id, text, sent_at, profiles, attachment)
    dm = InboundDM(
        account=account,
        x_event_id=x_event_id,
        profile=profiles.get(sender_id) or XProfile(id=sender_id),
        text=text,
        sent_at=sent_at,
        attachment=attachment,
        quick_reply_response=quick_reply_response,
        entities=entities,
    )
    contact, created = contact_upsert_from_x(
        account=account, profile=dm.profile, source=ContactSource.INBOUND_MESSAGE, at=sent_at
    )
    conversation = conversation_open_for(contact=contact, at=sent_at)
    conversation.contact = contact  # the deciders read message.conversation.contact: not read again
    with transaction.atomic():  # the DM and its counts together
        message = dm.message_in(conversation)
        message.save(force_insert=True)
        inbound_counted(message, contact.pk)
    conversation_message_added(conversation_id=conversation.pk, at=sent_at, inbound=True)
    contact_interaction_record(contact_id=contact.pk, at=sent_at, messages_received=1)
    return RecordedDM(message=message, contact=contact, conversation=conversation, inbound=True, new_contact=created)


def _media_link(attachment: dict[str, Any] | None) -> str:
    """The link X appends to a DM's text for its media."""
    return str(((attachment or {}).get("media") or {}).get("url") or "")


@dataclass(frozen=True)
class InboundDM:
    """A customer's DM to one of the accounts, as X told it: what `dm_record` and `dms_record` store."""

    account: Account
    x_event_id: str
    profile: XProfile  # the sender's
    text: str  # as X shows it: each link wrapped as t.co
    sent_at: datetime
    attachment: dict[str, Any] | None = None
    quick_reply_response: dict[str, Any] | None = None
    entities: dict[str, Any] | None = None

    def message_in(self, conversation: Conversation) -> Message:
        """The DM as a Message of `conversation`, not saved yet: its links as written, X's form in the metadata."""
        text = expanded(self.text, (self.entities or {}).get("urls"), drop=_media_link(self.attachment))
        metadata: dict[str, Any] = {}
        if self.quick_reply_response:
            metadata["quickReplyResponse"] = self.quick_reply_response
        if self.entities and any(self.entities.values()):
            metadata["entities"] = self.entities
        if self.text != text:
            metadata["xText"] = self.text
        return Message(
            account=self.account,
            conversation=conversation,
            direction=MessageDirection.INBOUND,
            origin=MessageOrigin.CUSTOMER,
            type=_message_type(self.attachment, self.quick_reply_response),
            content=text,
            attachments=_attachments(self.attachment),
            metadata=metadata,
            twitter_message_id=self.x_event_id,
            status=MessageStatus.RECEIVED,
            sent_at=self.sent_at,
        )


def _outbound_seen(
    account: Account,
    x_event_id: str,
    recipient_id: str,
    text: str,
    sent_at: datetime,
    profiles: dict[str, XProfile],
    attachment: dict[str, Any] | None,
) -> RecordedDM:
    profile = profiles.get(recipient_id) or XProfile(id=recipient_id)
    contact, created = contact_upsert_from_x(
        account=account, profile=profile, source=ContactSource.INBOUND_MESSAGE, at=sent_at
    )
    # The echo of the service's own send, arriving before the send recorded X's id, or after it failed
    # ambiguously (a timeout): the message already stored takes the id instead of a second copy.
    ours = (
        Message.objects.filter(
            account=account,
            conversation__contact=contact,
            direction=MessageDirection.OUTBOUND,
            twitter_message_id__isnull=True,
            status__in=[MessageStatus.PENDING, MessageStatus.FAILED],
            content=text,
            created_at__gte=timezone.now() - RECONCILE_WINDOW,
        )
        .select_related("conversation")
        .order_by("created_at")
        .first()
    )
    if ours is not None:
        message_mark_sent(message=ours, dm_event_id=x_event_id, at=sent_at)
        return RecordedDM(
            message=ours, contact=contact, conversation=ours.conversation, inbound=False, new_contact=created
        )
    conversation = conversation_open_for(contact=contact, at=sent_at)
    with transaction.atomic():  # X counted the DM: so does the account's quota, with the insert
        message = Message.objects.create(
            account=account,
            conversation=conversation,
            direction=MessageDirection.OUTBOUND,
            origin=MessageOrigin.X_APP,
            type=_message_type(attachment, None),
            content=text,
            attachments=_attachments(attachment),
            status=MessageStatus.PENDING,
        )
        quota_count(message=message, at=sent_at)
    conversation_message_added(conversation_id=conversation.pk, at=sent_at, inbound=False)
    message_mark_sent(message=message, dm_event_id=x_event_id, at=sent_at)
    return RecordedDM(message=message, contact=contact, conversation=conversation, inbound=False, new_contact=created)


def away_message_if_closed(*, account: Account, conversation: Conversation) -> bool:
    """Outside business hours, the away message: at most once per conversation per 12 hours. True when one was
    queued (sent after commit through the outbound path)."""
    hours = account.business_hours or {}
    now = timezone.now()
    if not (account.auto_reply_enabled and account.away_message and hours.get("enabled")) or is_open(hours, now):
        return False
    claimed = Conversation.objects.filter(
        Q(away_message_sent_at__isnull=True) | Q(away_message_sent_at__lt=now - AWAY_MESSAGE_EVERY),
        pk=conversation.pk,
    ).update(away_message_sent_at=now)
    if not claimed:
        return False
    send_system_message_later(
        conversation_id=conversation.pk, text=account.away_message, key=f"away:{conversation.pk}:{now.isoformat()}"
    )
    return True


def follow_record(
    *, account: Account, follower: XProfile, followed_id: str, following: bool, at: datetime
) -> Contact | None:
    """Someone followed (or unfollowed) the account; the account's own follows of others are not contacts. The
    contact when it is a new follower (it did not follow before); None otherwise."""
    if followed_id != account.twitter_user_id or follower.id == account.twitter_user_id:
        return None
    return contact_follow_set(account=account, profile=follower, following=following, at=at)


def read_receipt_record(*, account: Account, reader_id: str, last_read_event_id: str, at: datetime) -> int:
    """The contact read the account's DMs up to `last_read_event_id`: those messages get `readAt`."""
    if reader_id == account.twitter_user_id:
        return 0
    anchor = Message.objects.filter(account=account, twitter_message_id=last_read_event_id).first()
    cutoff = anchor.sent_at if anchor is not None and anchor.sent_at else at
    return Message.objects.filter(
        account=account,
        conversation__contact__twitter_user_id=reader_id,
        direction=MessageDirection.OUTBOUND,
        status=MessageStatus.SENT,
        read_at__isnull=True,
        sent_at__lte=cutoff,
    ).update(read_at=at)
