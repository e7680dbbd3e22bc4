"""The sandbox's data: X users, tokens, DMs, webhooks, faults, deliveries, and X's error shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

MAX_DM_TEXT = 10_000
DM_POLICIES = ("everyone", "following")


class Problem(Exception):
    """An X API error: v2 problem JSON, or v1.1 `errors` for the 1.1 endpoints."""

    def __init__(
        self, status: int, title: str, detail: str, *, code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code
        self.headers = headers or {}

    def body(self, v1: bool = False) -> dict[str, Any]:
        if v1:
            return {"errors": [{"code": self.code or self.status, "message": self.detail}]}
        kind = {400: "invalid-request", 401: "unauthorized", 403: "forbidden", 404: "resource-not-found"}
        problem_type = (
            "about:blank"
            if self.status == 401
            else f"https://api.twitter.com/2/problems/{kind.get(self.status, 'error')}"
        )
        body: dict[str, Any] = {"title": self.title, "detail": self.detail, "type": problem_type, "status": self.status}
        if self.code is not None:
            body["errors"] = [{"code": self.code, "message": self.detail}]
        return body


@dataclass
class User:
    id: str
    username: str
    name: str
    profile_image_url: str
    created_ms: int
    dm_policy: str = "everyone"  # or "following": DMs only from accounts the user follows (or has written to)


@dataclass
class Token:
    token: str
    secret: str
    user_id: str
    revoked: bool = False


@dataclass
class DM:
    id: str
    sender_id: str
    recipient_id: str
    text: str
    created_ms: int
    media_ids: list[str] = field(default_factory=list)
    source_app_id: str = ""
    quick_reply_response: dict[str, Any] | None = None
    x_text: str = ""  # the text as X shows it: each URL wrapped as a t.co link (xsandbox/links.py)
    urls: list[dict[str, Any]] = field(default_factory=list)  # the t.co links' entities

    def __post_init__(self) -> None:
        if (self.text or self.media_ids) and not self.x_text:
            from xsandbox.links import with_media_link, wrap

            self.x_text, self.urls = wrap(self.text, self.id)
            if self.media_ids:  # X appends a t.co link for the media to the text
                self.x_text, self.urls = with_media_link(self.x_text, self.urls, self.id)

    @property
    def media_link(self) -> str:
        return next((u["url"] for u in self.urls if u.get("media")), "")


@dataclass
class Webhook:
    id: str
    url: str
    valid: bool
    created_at: str


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int
    times: int
    mode: str = "status"  # or "timeout"
    seconds: float = 30.0
    after_send: bool = False
    code: int | None = None  # X's error code in the answer (default: 349 for a 403, 88 for a 429, 89 for a 401)
    rate: float = 1.0  # the share of matching calls it takes, at random (each taken call counts against `times`)
    taken: int = 0  # the calls it has answered so far
    reset: float = 60.0  # a 429's x-rate-limit-reset, this many seconds ahead


@dataclass
class Delivery:
    url: str
    status: int
    kind: str
    forUserId: str
    at: float
    id: str = ""  # the delivery: its retries keep it, a duplicate gets a new one
    attempt: int = 1
    eventIds: list[str] = field(default_factory=list)


def iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
