"""The X API client: OAuth 1.0a user context (requests-oauthlib) or the app's bearer token, with timeouts,
typed errors, retries of idempotent calls, and X's rate-limit headers: a DM send answers them to its caller
(`SentDM.rate_limit`, `on_rate_limit`), the other groups' last answer is kept per account (`last_rate_limit`)."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils.dateparse import parse_datetime
from requests_oauthlib import OAuth1Session

from mktx.xapi.errors import XError, XTimeout, XUnavailable, error_for

logger = logging.getLogger("mktx.xapi")

RETRY_BACKOFF = (0.25, 0.75)
DM_EVENT_FIELDS = "created_at,sender_id,dm_conversation_id,attachments"
DM_EVENT_PAGES = 20  # a lookup walks at most this many pages back (2,000 events)


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str
    profile_image_url: str


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset: int  # epoch seconds


@dataclass(frozen=True)
class SentDM:
    dm_conversation_id: str
    dm_event_id: str
    rate_limit: RateLimit | None = None  # what X's x-rate-limit-* headers said about the account's DM sends


OnRateLimit = Callable[[RateLimit], None]
UNREMEMBERED_GROUPS = frozenset({"dm_send"})  # answered to the caller instead: no cache write on the hot path


def _rate_limit_key(rate_key: str, group: str) -> str:
    return f"xapi:ratelimit:{rate_key}:{group}"


def last_rate_limit(rate_key: str, group: str) -> RateLimit | None:
    """What X last said about this account's limit for `group` (`users_me`, `dm_events`, ...), while it holds.
    Not kept for `dm_send`: a send answers its headers to the caller (`SentDM.rate_limit`, `on_rate_limit`)."""
    value = cache.get(_rate_limit_key(rate_key, group))
    return RateLimit(**value) if value else None


def rate_limit_of(headers: Any) -> RateLimit | None:
    """X's x-rate-limit-* headers, when all three are there and numbers."""
    try:
        return RateLimit(
            limit=int(headers["x-rate-limit-limit"]),
            remaining=int(headers["x-rate-limit-remaining"]),
            reset=int(headers["x-rate-limit-reset"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _rate_limit_seen(rate_key: str | None, group: str, headers: Any, on_rate_limit: OnRateLimit | None) -> None:
    rate_limit = rate_limit_of(headers)
    if rate_limit is None:
        return
    if on_rate_limit is not None:
        on_rate_limit(rate_limit)
    if rate_key and group not in UNREMEMBERED_GROUPS:
        ttl = max(1, rate_limit.reset - int(time.time()) + 5)
        value = {"limit": rate_limit.limit, "remaining": rate_limit.remaining, "reset": rate_limit.reset}
        cache.set(_rate_limit_key(rate_key, group), value, ttl)


@functools.cache
def _environ_proxies(base_url: str) -> dict[str, str]:
    return dict(requests.utils.get_environ_proxies(base_url))


def _settle(session: requests.Session) -> requests.Session:
    """What requests would read from the environment on every call (the proxies for X's address, a CA bundle),
    read once per process: a DM send spent a fifth of its CPU walking os.environ."""
    session.trust_env = False
    session.proxies.update(_environ_proxies(settings.X_API_BASE_URL))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


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
    on_rate_limit: OnRateLimit | None = None,
    **kwargs: Any,
) -> Any:
    """One X API call: the decoded JSON body, or a typed XError. Retries only what is safe to repeat.
    `on_rate_limit` hears X's rate-limit headers of every answer, an error's included."""
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
            _rate_limit_seen(rate_key, group, response.headers, on_rate_limit)
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
        self.session = _settle(
            OAuth1Session(
                settings.X_CONSUMER_KEY,
                client_secret=settings.X_CONSUMER_SECRET,
                resource_owner_key=token,
                resource_owner_secret=token_secret,
            )
        )
        self.rate_key = rate_key

    def _call(
        self,
        method: str,
        path: str,
        *,
        group: str,
        retries: int = 0,
        on_rate_limit: OnRateLimit | None = None,
        **kwargs: Any,
    ) -> Any:
        return _call(
            self.session,
            method,
            path,
            group=group,
            rate_key=self.rate_key,
            retries=retries,
            on_rate_limit=on_rate_limit,
            **kwargs,
        )

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

    def send_dm(
        self,
        participant_id: str,
        *,
        text: str | None = None,
        media_id: str | None = None,
        on_rate_limit: OnRateLimit | None = None,
    ) -> SentDM:
        """Never retried here: a retry after an unclear failure can send twice (x-platform-notes.md). X's rate-limit
        headers come back on the SentDM, and to `on_rate_limit` for an error answer too (a 429, a 403)."""
        payload: dict[str, Any] = {}
        if text:
            payload["text"] = text
        if media_id:
            payload["attachments"] = [{"media_id": media_id}]
        seen: list[RateLimit] = []

        def heard(rate_limit: RateLimit) -> None:
            seen.append(rate_limit)
            if on_rate_limit is not None:
                on_rate_limit(rate_limit)

        path = f"/2/dm_conversations/with/{participant_id}/messages"
        body = self._call("POST", path, group="dm_send", on_rate_limit=heard, json=payload)
        data = body.get("data") or {}
        return SentDM(
            dm_conversation_id=str(data.get("dm_conversation_id", "")),
            dm_event_id=str(data["dm_event_id"]),
            rate_limit=seen[-1] if seen else None,
        )

    def dm_events(
        self, participant_id: str, *, since: datetime | None = None, max_results: int = 100
    ) -> list[dict[str, Any]]:
        """The conversation's DM events, newest first, with who sent each and when (X answers only id, event_type
        and text unless dm_event.fields asks for more): one page, or with `since` every page back to that time
        (X pages with `pagination_token`, `max_results` at a time, and reaches back 30 days)."""
        events: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(DM_EVENT_PAGES):
            params: dict[str, Any] = {"max_results": max_results, "dm_event.fields": DM_EVENT_FIELDS}
            if token:
                params["pagination_token"] = token
            body = self._call(
                "GET",
                f"/2/dm_conversations/with/{participant_id}/dm_events",
                group="dm_events",
                retries=2,
                params=params,
            )
            page = list(body.get("data") or [])
            events += page
            token = (body.get("meta") or {}).get("next_token")
            oldest = parse_datetime(str(page[-1].get("created_at") or "")) if page else None
            if since is None or not token or (oldest is not None and oldest < since):
                return events
        raise XUnavailable(f"more than {DM_EVENT_PAGES} pages of DM events since {since}: not looked through")

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
        self.session = _settle(requests.Session())
        self.session.headers["Authorization"] = f"Bearer {settings.X_BEARER_TOKEN}"

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(_call(self.session, "GET", "/2/webhooks", group="webhooks", retries=2).get("data") or [])

    def register_webhook(self, url: str) -> dict[str, Any]:
        body = _call(self.session, "POST", "/2/webhooks", group="webhooks", json={"url": url})
        return dict(body.get("data") or {})

    def unsubscribe(self, webhook_id: str, user_id: str) -> None:
        path = f"/2/account_activity/webhooks/{webhook_id}/subscriptions/{user_id}/all"
        _call(self.session, "DELETE", path, group="subscriptions", retries=2)
