"""Per-merchant API rate limit, with fixed-window counters in the shared cache (Redis in production).

The counter is an atomic `incr` in Redis, so the limit holds across gunicorn workers and hosts. The result of the
check is left on the request for `RateLimitHeadersMiddleware`, which adds `X-RateLimit-*` to the response.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends


def hit(key: str, *, limit: int, period: int, now: float | None = None) -> tuple[bool, RateLimitState]:
    """Count one request against `key`; answer whether it is allowed and the window's state."""
    now = time.time() if now is None else now
    window_start = int(now // period) * period
    reset = window_start + period
    cache_key = f"ratelimit:{key}:{window_start}"
    cache.add(cache_key, 0, timeout=period + 5)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=period + 5)
        count = 1
    state = RateLimitState(limit=limit, remaining=max(0, limit - count), reset=reset)
    return count <= limit, state


class _WindowThrottle(BaseThrottle):
    setting_name = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def key_for(self, request: Request) -> str | None:
        raise NotImplementedError

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
        return f"login:{self.get_ident(request)}"
