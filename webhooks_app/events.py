"""Typed inbound X events: what the parser makes of a stored payload, and what handlers receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class XUserInfo:
    id: str
    screen_name: str = ""
    name: str = ""
    profile_image_url: str = ""


@dataclass(frozen=True)
class DirectMessageEvent:
    event_id: str
    for_user_id: str
    sender_id: str
    recipient_id: str
    text: str
    created_at: datetime
    entities: dict[str, Any] = field(default_factory=dict)
    attachment: dict[str, Any] | None = None
    quick_reply_response: dict[str, Any] | None = None
    source_app_id: str = ""
    users: dict[str, XUserInfo] = field(default_factory=dict)

    @property
    def is_echo(self) -> bool:
        """Sent by the subscribed account itself (through the API, or from X's own app)."""
        return self.sender_id == self.for_user_id

    @property
    def other_party_id(self) -> str:
        return self.recipient_id if self.is_echo else self.sender_id


@dataclass(frozen=True)
class FollowEvent:
    for_user_id: str
    type: str  # "follow" or "unfollow"
    source: XUserInfo
    target: XUserInfo
    created_at: datetime


@dataclass(frozen=True)
class ReadReceiptEvent:
    for_user_id: str
    reader_id: str
    recipient_id: str
    last_read_event_id: str
    created_at: datetime


@dataclass(frozen=True)
class TypingEvent:
    for_user_id: str
    sender_id: str
    recipient_id: str
    created_at: datetime


@dataclass(frozen=True)
class RevokeEvent:
    user_id: str
    app_id: str
    at: str


@dataclass(frozen=True)
class UnknownEvent:
    for_user_id: str
    keys: tuple[str, ...]


InboundEvent = DirectMessageEvent | FollowEvent | ReadReceiptEvent | TypingEvent | RevokeEvent | UnknownEvent
