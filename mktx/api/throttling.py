"""Per-merchant API rate limit, with fixed-window counters in the shared cache (Redis in production).

The counter is an atomic `incr` in Redis, so the limit holds across gunicorn workers and hosts. The result of the
check is left on the request for `RateLimitHeadersMiddleware`, which adds `X-RateLimit-*` to the response. When
Redis is down the limiter fails open (mktx/redis.py): the request is counted as the first of its window.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from mktx.redis import redis_call, redis_key


def client_address(request: HttpRequest) -> str:
    """The client's IP address: the socket's peer, or with `MKTX_TRUSTED_PROXIES` = N the Nth X-Forwarded-For
    entry from the right (each trusted proxy appends the address it saw; entries further left are the client's
    own claims). A missing or malformed entry falls back to the socket's address."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.MKTX_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        if len(forwarded) >= proxies:
            candidate = forwarded[-proxies]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return remote


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends


def _count(cache_key: str, ttl: int) -> int:
    """Add one to the window's counter, atomically. With Redis: INCR and EXPIRE in one round trip."""
    if settings.REDIS_URL:

        def incr(client: Any) -> int:
            pipe = client.pipeline(transaction=False)
            pipe.incr(redis_key(cache_key))
            pipe.expire(redis_key(cache_key), ttl, nx=True)
            return int(pipe.execute()[0])

        return redis_call("rate-limit count", 1, incr)
    cache.add(cache_key, 0, timeout=ttl)
    try:
        count = int(cache.incr(cache_key))
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=ttl)
        return 1
    cache.touch(cache_key, ttl)  # the database cache's incr is a set with the default timeout (300 s)
    return count


def hit(key: str, *, limit: int, period: int, now: float | None = None) -> tuple[bool, RateLimitState]:
    """Count one request against `key`; answer whether it is allowed and the window's state."""
    now = time.time() if now is None else now
    window_start = int(now // period) * period
    reset = window_start + period
    count = _count(f"ratelimit:{key}:{window_start}", period + 5)
    state = RateLimitState(limit=limit, remaining=max(0, limit - count), reset=reset)
    return count <= limit, state


def _peek(cache_key: str) -> int:
    if settings.REDIS_URL:
        return redis_call("rate-limit read", 0, lambda client: int(client.get(redis_key(cache_key)) or 0))
    return int(cache.get(cache_key) or 0)


def _add(cache_key: str, value: int, ttl: int) -> None:
    """Set `cache_key` unless it is set (two first failures at once open one window, not two)."""
    if settings.REDIS_URL:
        redis_call("rate-limit write", None, lambda client: client.set(redis_key(cache_key), value, ex=ttl, nx=True))
    else:
        cache.add(cache_key, value, timeout=ttl)


def _store(cache_key: str, value: int, ttl: int) -> None:
    if settings.REDIS_URL:
        redis_call("rate-limit write", None, lambda client: client.set(redis_key(cache_key), value, ex=ttl))
    else:
        cache.set(cache_key, value, timeout=ttl)


def _failure_window(key: str, period: int, now: float) -> int | None:
    """When `key`'s current failure window began (its first failure), or None when it has none open."""
    since = _peek(f"failures:{key}:since")
    return since if since and now < since + period else None


def _open_failure_window(key: str, period: int, now: float) -> int:
    since = _failure_window(key, period, now)
    if since is not None:
        return since
    if _peek(f"failures:{key}:since"):  # a window that has ended but whose key has not expired yet
        _store(f"failures:{key}:since", int(now), period + 5)
    else:
        _add(f"failures:{key}:since", int(now), period + 5)
    return _failure_window(key, period, now) or int(now)


def failure_reserve(key: str, *, limit: int, period: int, now: float | None = None) -> float | None:
    """Count one attempt against `key` as a failure *before* it is tried, atomically; answer the seconds to wait
    when that makes more than `limit` in the window (the attempt must then not be tried), else None.

    Counting first is what bounds concurrent attempts: checking and then counting after a slow password hash let a
    burst of parallel guesses all pass the check. The window starts at the first failure (not at a clock boundary,
    which would allow 2 x limit across one) and lasts `period`; `failure_refund` gives a successful attempt back.
    """
    now = time.time() if now is None else now
    since = _open_failure_window(key, period, now)
    if _count(f"failures:{key}:{since}", period + 5) <= limit:
        return None
    return max(1.0, since + period - now)


def failure_refund(key: str, *, period: int, now: float | None = None) -> None:
    """Give back the attempt `failure_reserve` counted, when it turned out not to be a failure."""
    now = time.time() if now is None else now
    since = _failure_window(key, period, now)
    if since is None:
        return
    cache_key = f"failures:{key}:{since}"
    if settings.REDIS_URL:
        redis_call("rate-limit refund", None, lambda client: client.decr(redis_key(cache_key)))
        return
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing to give back
        cache.decr(cache_key)
        cache.touch(cache_key, period + 5)


class _WindowThrottle(BaseThrottle):
    setting_name = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def key_for(self, request: Request) -> str | None:
        raise NotImplementedError

    def get_ident(self, request: Request) -> str:
        # DRF's reads X-Forwarded-For as the client sends it; the project has one reading of the client address
        return client_address(request)

    def allow_request(self, request: Request, view: Any) -> bool:
        key = self.key_for(request)
        if key is None:
            return True
        limit, period = getattr(settings, self.setting_name)
        allowed, state = hit(key, limit=limit, period=period)
        request._request.mktx_rate_limit = state  # type: ignore[attr-defined]
        if not allowed:
            self._wait = max(1.0, state.reset - time.time())
        return allowed

    def wait(self) -> float | None:
        return self._wait


class MerchantRateThrottle(_WindowThrottle):
    """`MKTX_API_RATE_LIMIT` API calls per merchant."""

    setting_name = "MKTX_API_RATE_LIMIT"

    def key_for(self, request: Request) -> str | None:
        merchant_id = getattr(request.user, "merchant_id", None)
        return f"api:{merchant_id}" if merchant_id else None


class LoginRateThrottle(_WindowThrottle):
    """`MKTX_LOGIN_RATE_LIMIT` login and refresh attempts per client address."""

    setting_name = "MKTX_LOGIN_RATE_LIMIT"

    def key_for(self, request: Request) -> str | None:
        return f"login:{client_address(request)}"
