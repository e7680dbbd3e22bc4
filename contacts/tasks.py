"""django-q2 tasks of the inbox: they take ids, reload rows, call one service, and are safe to run twice."""

from __future__ import annotations

import logging

from contacts.models import Conversation, MessageOrigin
from contacts.services.outbound import message_send
from mktx.api.errors import ApiError

logger = logging.getLogger("mktx.contacts")


def send_system_message(conversation_id: str, text: str, idempotency_key: str) -> str:
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


def ensure_segment_indexes(conditions: list[object]) -> list[str]:
    """After a segment save: note its numeric attribute keys and sync the bounded set of indexes (PostgreSQL)."""
    from contacts.services.segments import segment_indexes_ensure

    return segment_indexes_ensure(conditions=conditions)


def sync_attribute_indexes() -> dict[str, list[str]]:
    """After a segment delete (or on demand): drop the indexes of keys no segment uses, fill the free places."""
    from dataclasses import asdict

    from contacts.services.attribute_indexes import attribute_indexes_sync

    return asdict(attribute_indexes_sync())
