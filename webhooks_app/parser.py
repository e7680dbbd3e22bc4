"""Pure functions from X's Account Activity payloads to stored rows and typed events (x-platform-notes.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhooks_app.events import (
    DirectMessageEvent,
    FollowEvent,
    InboundEvent,
    ReadReceiptEvent,
    RevokeEvent,
    TypingEvent,
    UnknownEvent,
    XUserInfo,
)

DM, FOLLOW, UNFOLLOW, READ, TYPING, REVOKE, UNKNOWN = (
    "direct_message",
    "follow",
    "unfollow",
    "read_receipt",
    "typing",
    "revoke",
    "unknown",
)
KINDS = (DM, FOLLOW, UNFOLLOW, READ, TYPING, REVOKE, UNKNOWN)

_ARRAYS = {
    "direct_message_events": DM,
    "follow_events": FOLLOW,
    "direct_message_mark_read_events": READ,
    "direct_message_indicate_typing_events": TYPING,
}


class PayloadError(ValueError):
    """The payload is not what X sends."""


@dataclass(frozen=True)
class RawEvent:
    """One event of a delivery, as stored: its kind, deduplication key, subscribed user and own payload."""

    kind: str
    dedup_key: str
    for_user_id: str
    payload: dict[str, Any]


def without_nul(value: Any) -> Any:
    """The payload with every NUL removed from its strings and keys: PostgreSQL stores no NUL in text or jsonb,
    and a signed delivery is never refused for its content (X would retry it, then drop it)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key.replace("\x00", ""): without_nul(item) for key, item in value.items()}
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:40]


def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is an object, else an empty one: X's shapes, but a forged or broken payload may hold anything."""
    return value if isinstance(value, dict) else {}


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _dedup_key(kind: str, for_user: str, event: dict[str, Any]) -> str:
    if kind == DM and event.get("id"):
        return f"dm:{event['id']}:{for_user}"
    if kind == READ:
        reader = _s(event.get("sender_id"))
        recipient = _s(_obj(event.get("target")).get("recipient_id"))
        return f"read:{reader}:{recipient}:{_s(event.get('last_read_event_id'))}:{for_user}"
    if kind in (FOLLOW, UNFOLLOW):
        source = _s(_obj(event.get("source")).get("id"))
        target = _s(_obj(event.get("target")).get("id"))
        return f"follow:{_s(event.get('type'))}:{source}:{target}:{_s(event.get('created_timestamp'))}:{for_user}"
    return f"{kind}:{_digest(event)}:{for_user}"


def split_payload(body: Any) -> list[RawEvent]:
    """One stored row per event of a delivery, each with the users and apps maps it needs."""
    if not isinstance(body, dict):
        raise PayloadError("a webhook payload is a JSON object")
    for_user = _s(body.get("for_user_id"))
    revoke = _obj(body.get("user_event")).get("revoke")
    if isinstance(revoke, dict):
        user_id = _s(_obj(revoke.get("source")).get("user_id"))
        return [RawEvent(REVOKE, f"revoke:{user_id}:{_s(revoke.get('date_time'))}", user_id, body)]
    events: list[RawEvent] = []
    shared = {key: body[key] for key in ("users", "apps") if key in body}
    for array, kind in _ARRAYS.items():
        items = body.get(array)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict):
                raise PayloadError(f"{array} holds a non-object")
            item_kind = UNFOLLOW if kind == FOLLOW and item.get("type") == "unfollow" else kind
            payload = {"for_user_id": for_user, array: [item], **shared}
            events.append(RawEvent(item_kind, _dedup_key(item_kind, for_user, item), for_user, payload))
    if not events:
        events.append(RawEvent(UNKNOWN, f"unknown:{_digest(body)}", for_user, body))
    return events


def _when(epoch_ms: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(epoch_ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise PayloadError(f"created_timestamp {epoch_ms!r} is not epoch milliseconds") from None


def _user(raw: Any) -> XUserInfo:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise PayloadError("a user object needs an id")
    return XUserInfo(
        id=_s(raw.get("id_str") or raw.get("id")),
        screen_name=_s(raw.get("screen_name")),
        name=_s(raw.get("name")),
        profile_image_url=_s(raw.get("profile_image_url_https") or raw.get("profile_image_url")),
    )


def _only(payload: dict[str, Any], array: str) -> dict[str, Any]:
    items = payload.get(array)
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise PayloadError(f"{array} must hold exactly one event")
    return items[0]


def _parse_dm(payload: dict[str, Any]) -> DirectMessageEvent:
    event = _only(payload, "direct_message_events")
    create = event.get("message_create")
    if event.get("type") != "message_create" or not isinstance(create, dict) or not event.get("id"):
        raise PayloadError("a direct message event needs type message_create, an id and message_create")
    data = _obj(create.get("message_data"))
    sender, recipient = _s(create.get("sender_id")), _s(_obj(create.get("target")).get("recipient_id"))
    if not sender or not recipient:
        raise PayloadError("a direct message needs sender_id and target.recipient_id")
    users = payload.get("users") or {}
    return DirectMessageEvent(
        event_id=_s(event["id"]),
        for_user_id=_s(payload.get("for_user_id")),
        sender_id=sender,
        recipient_id=recipient,
        text=_s(data.get("text")),
        created_at=_when(event.get("created_timestamp")),
        entities=_obj(data.get("entities")),
        attachment=data.get("attachment"),
        quick_reply_response=data.get("quick_reply_response"),
        source_app_id=_s(create.get("source_app_id")),
        users={_s(uid): _user(raw) for uid, raw in users.items()} if isinstance(users, dict) else {},
    )


def _parse_follow(payload: dict[str, Any]) -> FollowEvent:
    event = _only(payload, "follow_events")
    if event.get("type") not in (FOLLOW, UNFOLLOW):
        raise PayloadError("a follow event's type is follow or unfollow")
    return FollowEvent(
        for_user_id=_s(payload.get("for_user_id")),
        type=str(event["type"]),
        source=_user(event.get("source")),
        target=_user(event.get("target")),
        created_at=_when(event.get("created_timestamp")),
    )


def _parse_read(payload: dict[str, Any]) -> ReadReceiptEvent:
    event = _only(payload, "direct_message_mark_read_events")
    reader, recipient = _s(event.get("sender_id")), _s(_obj(event.get("target")).get("recipient_id"))
    if not reader or not recipient or not event.get("last_read_event_id"):
        raise PayloadError("a read event needs sender_id, target.recipient_id and last_read_event_id")
    return ReadReceiptEvent(
        for_user_id=_s(payload.get("for_user_id")),
        reader_id=reader,
        recipient_id=recipient,
        last_read_event_id=_s(event["last_read_event_id"]),
        created_at=_when(event.get("created_timestamp")),
    )


def _parse_typing(payload: dict[str, Any]) -> TypingEvent:
    event = _only(payload, "direct_message_indicate_typing_events")
    return TypingEvent(
        for_user_id=_s(payload.get("for_user_id")),
        sender_id=_s(event.get("sender_id")),
        recipient_id=_s(_obj(event.get("target")).get("recipient_id")),
        created_at=_when(event.get("created_timestamp")),
    )


def _parse_revoke(payload: dict[str, Any]) -> RevokeEvent:
    revoke = _obj(_obj(payload.get("user_event")).get("revoke"))
    user_id = _s(_obj(revoke.get("source")).get("user_id"))
    if not user_id:
        raise PayloadError("a revoke event needs source.user_id")
    return RevokeEvent(
        user_id=user_id, app_id=_s(_obj(revoke.get("target")).get("app_id")), at=_s(revoke.get("date_time"))
    )


def parse_event(kind: str, payload: dict[str, Any]) -> InboundEvent:
    """The typed event of a stored row; PayloadError when it is malformed."""
    if kind == DM:
        return _parse_dm(payload)
    if kind in (FOLLOW, UNFOLLOW):
        return _parse_follow(payload)
    if kind == READ:
        return _parse_read(payload)
    if kind == TYPING:
        return _parse_typing(payload)
    if kind == REVOKE:
        return _parse_revoke(payload)
    return UnknownEvent(for_user_id=_s(payload.get("for_user_id")), keys=tuple(sorted(payload)))
