"""Redacting an erased contact from the raw events the webhook stored. It sits next to the parser because it is the
other code that knows the shape of X's payloads; contacts reaches it only through its erasure hook (apps.py)."""

from __future__ import annotations

from typing import Any

from contacts.erasure import ErasedContact
from webhooks_app.models import InboundEvent

ERASED = "[erased]"


def payload_redact(payload: dict[str, Any], x_user_id: str) -> dict[str, Any]:
    """`payload` without the words and profile of X user `x_user_id`: the DMs they sent or received lose their text,
    attachment, quick reply and entities; their profile (in follow events and the users map) keeps only the id."""
    for event in payload.get("direct_message_events") or []:
        create = event.get("message_create") or {}
        if x_user_id in (create.get("sender_id"), (create.get("target") or {}).get("recipient_id")):
            data = create.setdefault("message_data", {})
            data["text"] = ERASED
            for key in ("attachment", "quick_reply_response", "entities"):
                data.pop(key, None)
    for event in payload.get("follow_events") or []:
        for side in ("source", "target"):
            user = event.get(side) or {}
            if user.get("id") == x_user_id:
                event[side] = _erased_user(x_user_id)
    users = payload.get("users") or {}
    if x_user_id in users:
        users[x_user_id] = _erased_user(x_user_id)
    return payload


def _erased_user(x_user_id: str) -> dict[str, str]:
    return {"id": x_user_id, "name": ERASED, "screen_name": ERASED}


def raw_events_redact(erased: ErasedContact) -> int:
    """The erasure hook: redact the contact from the stored events of its account; how many were rewritten."""
    events = InboundEvent.objects.filter(for_user_id=erased.account_x_user_id, payload__icontains=erased.x_user_id)
    redacted = 0
    for event in events.only("pk", "payload").iterator(chunk_size=500):
        InboundEvent.objects.filter(pk=event.pk).update(payload=payload_redact(event.payload, erased.x_user_id))
        redacted += 1
    return redacted
