"""Reads of the inbox, scoped to a merchant and joined as the API needs (a constant number of queries per page)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from contacts.models import ConsentEvent, Contact, ContactTag, Conversation, Message, Tag
from contacts.validation import normalize_tag
from mktx.api.errors import InvalidInput


def contacts_of(merchant_id: uuid.UUID) -> QuerySet[Contact]:
    return Contact.objects.filter(merchant_id=merchant_id)


def contacts_filter(
    contacts: QuerySet[Contact],
    *,
    merchant_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    tags: str | None = None,
    tags_match: str = "all",
    search: str | None = None,
) -> QuerySet[Contact]:
    if account_id is not None:
        contacts = contacts.filter(account_id=account_id)
    if tags:
        names = list(dict.fromkeys(normalize_tag(t, "tags") for t in tags.split(",") if t.strip()))
        if not names:
            raise InvalidInput("tags", "name at least one tag")
        tag_ids = dict(Tag.objects.filter(merchant_id=merchant_id, name__in=names).values_list("name", "id"))
        if tags_match == "any":
            contacts = contacts.filter(
                Exists(ContactTag.objects.filter(contact=OuterRef("pk"), tag_id__in=list(tag_ids.values())))
            )
        elif len(tag_ids) < len(names):
            contacts = contacts.none()
        else:
            for tag_id in tag_ids.values():
                contacts = contacts.filter(Exists(ContactTag.objects.filter(contact=OuterRef("pk"), tag_id=tag_id)))
    if search:
        term = search.strip().lstrip("@")
        if term:
            contacts = contacts.filter(Q(username__icontains=term) | Q(display_name__icontains=term))
    return contacts


def conversations_of(merchant_id: uuid.UUID) -> QuerySet[Conversation]:
    return Conversation.objects.filter(merchant_id=merchant_id).select_related("contact")


def conversation_messages(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("created_at", "id")


def conversation_latest_messages(conversation: Conversation, *, take: int, skip: int = 0) -> tuple[list[Message], int]:
    """The newest `take` messages after passing over the `skip` newest, oldest first (as a chat reads), and how many
    the conversation has."""
    newest = list(conversation.messages.order_by("-created_at", "-id")[skip : skip + take])
    total = len(newest) if skip == 0 and len(newest) < take else conversation.messages.count()
    return newest[::-1], total


def format_duration(seconds: int | None) -> str | None:
    """`5m 30s`, `2h 5m`, `1d 3h`, as in the reference."""
    if seconds is None:
        return None
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def contact_engagement(contact: Contact) -> dict[str, Any]:
    average = contact.response_time_total // contact.response_time_count if contact.response_time_count else None
    return {
        "messagesSent": contact.messages_sent,
        "messagesReceived": contact.messages_received,
        "averageResponseTime": format_duration(average),
        "averageResponseTimeSeconds": average,
    }


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def contact_export(contact: Contact) -> dict[str, Any]:
    """Everything held about the contact (GDPR access request)."""
    conversations = []
    for conversation in contact.conversations.order_by("started_at").prefetch_related("messages"):
        conversations.append(
            {
                "id": str(conversation.id),
                "status": conversation.status,
                "startedAt": _iso(conversation.started_at),
                "closedAt": _iso(conversation.closed_at),
                "messages": [
                    {
                        "id": str(m.id),
                        "direction": m.direction,
                        "type": m.type,
                        "content": m.content,
                        "attachments": m.attachments,
                        "metadata": m.metadata,
                        "status": m.status,
                        "sentAt": _iso(m.sent_at),
                        "readAt": _iso(m.read_at),
                        "twitterMessageId": m.twitter_message_id,
                    }
                    for m in sorted(conversation.messages.all(), key=lambda m: m.created_at)
                ],
            }
        )
    consent = ConsentEvent.objects.filter(contact=contact).order_by("created_at")
    return {
        "contact": {
            "id": str(contact.id),
            "accountId": str(contact.account_id),
            "twitterUserId": contact.twitter_user_id,
            "username": contact.username,
            "displayName": contact.display_name,
            "profileImageUrl": contact.profile_image_url,
            "source": contact.source,
            "following": contact.following,
            "optedOut": contact.opted_out,
            "createdAt": _iso(contact.created_at),
            "firstInteractionAt": _iso(contact.first_interaction_at),
            "lastInteractionAt": _iso(contact.last_interaction_at),
        },
        "tags": list(contact.contact_tags.order_by("tag__name").values_list("tag__name", flat=True)),
        "attributes": contact.attributes,
        "engagement": contact_engagement(contact),
        "consent": [
            {"action": c.action, "keyword": c.keyword, "source": c.source, "at": _iso(c.created_at)} for c in consent
        ],
        "conversations": conversations,
        "exportedAt": _iso(timezone.now()),
    }
