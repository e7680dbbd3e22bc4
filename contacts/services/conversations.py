"""Conversations: the open one of a contact, closing, assigning."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, F, Q, Value, When
from django.utils import timezone

from contacts.models import (
    AIStatus,
    Contact,
    Conversation,
    ConversationEvent,
    ConversationEventKind,
    ConversationStatus,
)
from contacts.services.rollup import event_counted
from mktx.api.errors import InvalidInput
from mktx.bulk import values_update
from mktx.iam.models import User

OPENINGS = (ConversationEventKind.OPENED, ConversationEventKind.REOPENED)


def conversation_open_for(*, contact: Contact, at: datetime) -> Conversation:
    """The contact's open conversation, or a new one (a closed conversation stays closed)."""
    conversation = Conversation.objects.filter(contact=contact, status=ConversationStatus.OPEN).first()
    if conversation is not None:
        return conversation
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(
                merchant_id=contact.merchant_id,
                account_id=contact.account_id,
                contact=contact,
                started_at=at,
                last_message_at=at,
            )
            _event(conversation, ConversationEventKind.OPENED, at)
            Contact.objects.filter(pk=contact.pk).update(conversation_count=F("conversation_count") + 1)
    except IntegrityError:  # opened a moment ago by a concurrent message
        conversation = Conversation.objects.get(contact=contact, status=ConversationStatus.OPEN)
    return conversation


def conversation_message_added(*, conversation_id: Any, at: datetime, inbound: bool) -> None:
    """Counters of a conversation when a message is stored; an inbound one starts the wait for a reply. One
    UPDATE: this runs for every message."""
    updates: dict[str, Any] = {
        "message_count": F("message_count") + 1,
        "last_message_at": Case(When(last_message_at__lt=at, then=Value(at)), default=F("last_message_at")),
    }
    if inbound:
        updates["awaiting_reply_since"] = Case(
            When(awaiting_reply_since__isnull=True, then=Value(at)), default=F("awaiting_reply_since")
        )
    Conversation.objects.filter(pk=conversation_id).update(**updates)


def conversations_inbound_added(added: list[tuple[Any, datetime]]) -> None:
    """`conversation_message_added(inbound=True)` for many inbound messages, (conversation id, when) each, in one
    statement: a conversation with several gets them all counted, its last message the latest, its wait for a reply
    (when none runs) from the earliest. Rows in key order, as they are locked."""
    per: dict[Any, tuple[int, datetime, datetime]] = {}
    for conversation_id, at in added:
        n, first, last = per.get(conversation_id, (0, at, at))
        per[conversation_id] = (n + 1, min(first, at), max(last, at))
    when = Conversation._meta.get_field("last_message_at")
    values_update(
        Conversation,
        [
            ("k", Conversation._meta.pk),
            ("n", Conversation._meta.get_field("message_count")),
            ("first", when),
            ("last", when),
        ],
        [(pk, n, first, last) for pk, (n, first, last) in sorted(per.items(), key=lambda item: str(item[0]))],
        assignments=(
            "message_count = t.message_count + v.n, "
            "last_message_at = CASE WHEN t.last_message_at < v.last THEN v.last ELSE t.last_message_at END, "
            "awaiting_reply_since = COALESCE(t.awaiting_reply_since, v.first)"
        ),
    )


def conversation_close(*, conversation: Conversation, reason: str = "") -> Conversation:
    """Close it (once): a wait for an answer ends unanswered, and its history gets the closing."""
    now = timezone.now()
    with transaction.atomic():
        closed = Conversation.objects.filter(pk=conversation.pk, status=ConversationStatus.OPEN).update(
            status=ConversationStatus.CLOSED, closed_at=now, close_reason=reason[:200], awaiting_reply_since=None
        )
        if closed:
            span = (
                ConversationEvent.objects.filter(conversation_id=conversation.pk, kind__in=OPENINGS, at__lte=now)
                .order_by("-at", "-id")
                .values_list("at", flat=True)
                .first()
            )
            opened_at = span or conversation.started_at
            assignee = Conversation.objects.filter(pk=conversation.pk).values_list("assigned_to_id", flat=True).first()
            _event(conversation, ConversationEventKind.CLOSED, now, opened_at=opened_at, assignee_id=assignee)
    conversation.refresh_from_db()
    return conversation


def _event(
    conversation: Conversation, kind: str, at: datetime, opened_at: datetime | None = None, assignee_id: Any = None
) -> None:
    """The conversation's history and the rollup's count of it (in the caller's transaction)."""
    event = ConversationEvent.objects.create(
        merchant_id=conversation.merchant_id,
        account_id=conversation.account_id,
        conversation_id=conversation.pk,
        kind=kind,
        at=at,
        opened_at=opened_at,
        seconds=None if opened_at is None else max(0, int((at - opened_at).total_seconds())),
        assignee_id=assignee_id,
    )
    event_counted(event)


def conversation_reopen(*, conversation: Conversation) -> Conversation:
    """Reopen a closed conversation to reply in it, unless the contact has started another since."""
    if conversation.status == ConversationStatus.OPEN:
        return conversation
    try:
        with transaction.atomic():
            reopened = Conversation.objects.filter(pk=conversation.pk, status=ConversationStatus.CLOSED).update(
                status=ConversationStatus.OPEN,
                closed_at=None,
                close_reason="",  # a person's: its AI status stays
            )
            if reopened:
                _event(conversation, ConversationEventKind.REOPENED, timezone.now())
    except IntegrityError:
        raise InvalidInput("conversationId", "the contact has another open conversation: reply there") from None
    conversation.refresh_from_db()
    return conversation


def conversation_assign(*, conversation: Conversation, user_id: uuid.UUID | None) -> Conversation:
    """Assign to an active user of the same merchant, or unassign with None."""
    if user_id is not None:
        user = User.objects.filter(pk=user_id, merchant_id=conversation.merchant_id, is_active=True).first()
        if user is None:
            raise InvalidInput("userId", "no active user of this merchant has this id")
    Conversation.objects.filter(pk=conversation.pk).update(assigned_to_id=user_id)
    conversation.assigned_to_id = user_id
    return conversation


def conversation_ai_escalate(*, conversation: Conversation, reason: str, handoff: dict[str, Any]) -> bool:
    """The chatbot hands the conversation to people: `ai_status` escalated with the reason and the hand-off summary
    (intent, slots, last turns). It stays open; the bot stays silent in it until a person closes it. False when it
    was escalated already (nothing changes: the first hand-off's reason and summary stay)."""
    now = timezone.now()
    changed = (
        Conversation.objects.filter(pk=conversation.pk)
        .exclude(ai_status=AIStatus.ESCALATED)
        .update(
            ai_status=AIStatus.ESCALATED, ai_escalation_reason=reason[:200], ai_escalated_at=now, ai_handoff=handoff
        )
    )
    if changed:
        conversation.ai_status, conversation.ai_escalation_reason = AIStatus.ESCALATED, reason[:200]
        conversation.ai_escalated_at, conversation.ai_handoff = now, handoff
    return bool(changed)


def conversation_assignee_next(*, merchant_id: Any, roles: Any = None) -> Any:
    """Round-robin assignment (a flow's `assign_conversation`, the bot's hand-off): the merchant's active staff
    member (of `roles`, when given) with the fewest open conversations assigned, the longest-standing first; None
    when there is nobody."""
    staff = User.objects.filter(merchant_id=merchant_id, is_active=True)
    if roles is not None:
        staff = staff.filter(role__in=list(roles))
    user = (
        staff.annotate(
            open_count=Count("assigned_conversations", filter=Q(assigned_conversations__status=ConversationStatus.OPEN))
        )
        .order_by("open_count", "date_joined", "pk")
        .first()
    )
    return user.pk if user is not None else None
