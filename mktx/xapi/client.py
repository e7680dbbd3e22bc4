"""The X API client: OAuth 1.0a user context (requests-oauthlib) or the app's bearer token, with timeouts,
typed errors, retries of idempotent calls, and the last rate-limit headers kept per account for pacing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from requests_oauthlib import OAuth1Session

from mktx.xapi.errors import XError, XTimeout, XUnavailable, error_for

logger = logging.getLogger("mktx.xapi")

RETRY_BACKOFF = (0.25, 0.75)


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str
    profile_image_url: str


@dataclass(frozen=True)
class SentDM:
    dm_conversation_id: str
    dm_event_id: str


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset: int  # epoch seconds


def _rate_limit_key(rate_key: str, group: str) -> str:
    return f"xapi:ratelimit:{rate_key}:{group}"


def last_rate_limit(rate_key: str, group: str) -> RateLimit | None:
    """What X last said about this account's limit for `group` (`dm_send`, `users_me`, ...), while it holds."""
    value = cache.get(_rate_limit_key(rate_key, group))
    return RateLimit(**value) if value else None


def _remember_rate_limit(rate_key: str | None, group: str, headers: Any) -> None:
    if not rate_key:
        return
    try:
        limit = int(headers["x-rate-limit-limit"])
        remaining = int(headers["x-rate-limit-remaining"])
        reset = int(headers["x-rate-limit-reset"])
    except (KeyError, TypeError, ValueError):
        return
    ttl = max(1, reset - int(time.time()) + 5)
    cache.set(_rate_limit_key(rate_key, group), {"limit": limit, "remaining": remaining, "reset": reset}, ttl)


def _timeouts() -> tuple[float, float]:
    return settings.X_API_CONNECT_TIMEOUT, settings.X_API_READ_TIMEOUT


def _call(
    session: requests.Session,
    method: str,
    path: str,
    *,
    group: str,
    rate_key: str | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> Any:
    """One X API call: the decoded JSON body, or a typed XError. Retries only what is safe to repeat."""
    url = settings.X_API_BASE_URL + path
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            response = session.request(method, url, timeout=_timeouts(), **kwargs)
        except requests.Timeout:
            error: XError = XTimeout(f"X did not answer {method} {path} in time")
        except requests.RequestException as exc:
            error = XUnavailable(f"X could not be reached: {type(exc).__name__}")
        else:
            elapsed = (time.monotonic() - started) * 1000
            _remember_rate_limit(rate_key, group, response.headers)
            logger.debug("X %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed)
            if response.status_code < 400:
                return response.json() if response.content else {}
            try:
                body = response.json()
            except ValueError:
                body = None
            error = error_for(response.status_code, body, response.headers)
        if not error.retryable or attempt >= retries:
            logger.warning("X %s %s failed: %s %s", method, path, type(error).__name__, error.message)
            raise error
        time.sleep(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
        attempt += 1


class XClient:
    """Calls made on behalf of one X account (OAuth 1.0a user context)."""

    def __init__(self, token: str, token_secret: str, *, rate_key: str | None = None) -> None:
        self.session = OAuth1Session(
            settings.X_CONSUMER_KEY,
            client_secret=settings.X_CONSUMER_SECRET,
            resource_owner_key=token,
            resource_owner_secret=token_secret,
        )
        self.rate_key = rate_key

    def _call(self, method: str, path: str, *, group: str, retries: int = 0, **kwargs: Any) -> Any:
        return _call(self.session, method, path, group=group, rate_key=self.rate_key, retries=retries, **kwargs)

    def get_me(self) -> XUser:
        body = self._call(
            "GET", "/2/users/me", group="users_me", retries=2, params={"user.fields": "profile_image_url"}
        )
        data = body.get("data") or {}
        return XUser(
            id=str(data["id"]),
            username=str(data.get("username", "")),
            name=str(data.get("name", "")),
            profile_image_url=str(data.get("profile_image_url", "")),
        )

    def send_dm(self, participant_id: str, *, text: str | None = None, media_id: str | None = None) -> SentDM:
        """Never retried here: a retry after an unclear failure can send twice (x-platform-notes.md)."""
        payload: dict[str, Any] = {}
        if text:
            payload["text"] = text
        if media_id:
            payload["attachments"] = [{"media_id": media_id}]
        body = self._call("POST", f"/2/dm_conversations/with/{participant_id}/messages", group="dm_send", json=payload)
        data = body.get("data") or {}
        return SentDM(dm_conversation_id=str(data.get("dm_conversation_id", "")), dm_event_id=str(data["dm_event_id"]))

    def dm_events(self, participant_id: str, max_results: int = 100) -> list[dict[str, Any]]:
        """The conversation's DM events, newest first."""
        body = self._call(
            "GET",
            f"/2/dm_conversations/with/{participant_id}/dm_events",
            group="dm_events",
            retries=2,
            params={"max_results": max_results},
        )
        return list(body.get("data") or [])

    def upload_media(self, data: bytes, content_type: str, filename: str = "image", category: str = "dm_image") -> str:
        body = self._call(
            "POST",
            "/2/media/upload",
            group="media",
            files={"media": (filename, data, content_type)},
            data={"media_category": category},
        )
        return str((body.get("data") or {})["id"])

    def invalidate_token(self) -> None:
        self._call("POST", "/1.1/oauth/invalidate_token", group="tokens")

    def subscribe(self, webhook_id: str) -> None:
        self._call("POST", f"/2/account_activity/webhooks/{webhook_id}/subscriptions/all", group="subscriptions")


class XAppClient:
    """App-only calls with the bearer token: webhook registration and unsubscribing."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.X_BEARER_TOKEN}"

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(_call(self.session, "GET", "/2/webhooks", group="webhooks", retries=2).get("data") or [])

    def register_webhook(self, url: str) -> dict[str, Any]:
        body = _call(self.session, "POST", "/2/webhooks", group="webhooks", json={"url": url})
        return dict(body.get("data") or {})

    def unsubscribe(self, webhook_id: str, user_id: str) -> None:
        path = f"/2/account_activity/webhooks/{webhook_id}/subscriptions/{user_id}/all"
        _call(self.session, "DELETE", path, group="subscriptions", retries=2)
