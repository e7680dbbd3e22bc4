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
    """Build the expression indexes a segment's numeric attribute conditions need (PostgreSQL)."""
    from contacts.services.segments import segment_indexes_ensure

    return segment_indexes_ensure(conditions=conditions)
