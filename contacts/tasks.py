"""django-q2 tasks of the inbox: they take ids, reload rows, call one service, and are safe to run twice."""

from __future__ import annotations

import logging

from contacts.services.outbound import system_message_send

logger = logging.getLogger("mktx.contacts")


def send_system_message(conversation_id: str, text: str, idempotency_key: str) -> str:
    return system_message_send(conversation_id=conversation_id, text=text, idempotency_key=idempotency_key)


def ensure_segment_indexes(conditions: list[object]) -> list[str]:
    """After a segment save: note its numeric attribute keys and sync the bounded set of indexes (PostgreSQL)."""
    from contacts.services.segments import segment_indexes_ensure

    return segment_indexes_ensure(conditions=conditions)


def sync_attribute_indexes() -> dict[str, object]:
    """After a segment delete (or on demand): drop the indexes of keys no segment uses, fill the free places.
    Returns at once (`busy`) when another sync runs: that one passes again for this one."""
    from dataclasses import asdict

    from contacts.services.attribute_indexes import attribute_indexes_sync

    return asdict(attribute_indexes_sync())
