"""Direct Redis access for the few hot paths where Django's cache API costs too much (it builds a client per call):
one client per process, and keys under the cache's prefix so `cache.clear()` and other deployments keep apart.

Redis holds nothing the service cannot do without (rate-limit counters, the inbound drain flag, cached X rate-limit
state), so every use fails open: `redis_call` answers a default when Redis refuses, times out or is known to be
down. Short socket timeouts bound a silent Redis to `MKTX_REDIS_TIMEOUT_MS`, and a small circuit breaker keeps a
down Redis from being tried again on every request for `MKTX_REDIS_RETRY_SECONDS`. Each fail-open answer is logged
(the first of each outage as a warning) and counted; `/readyz` shows the count.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("mktx.redis")

T = TypeVar("T")

_lock = threading.Lock()
_open_until: dict[str, float] = {}  # Redis URL -> monotonic time before which it is not tried
_counters = {"failures": 0, "fail_open": 0}


@functools.cache
def _client(url: str, timeout: float) -> Any:
    return redis.Redis.from_url(url, **redis_client_options(timeout))


def redis_client_options(timeout: float) -> dict[str, Any]:
    """Short timeouts and no retries: redis-py's default retries three times with backoff (seconds per call)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": Retry(NoBackoff(), 0)}


def shared_redis() -> Any:
    """The process's Redis client for REDIS_URL (callers check that it is set)."""
    return redis_client(settings.REDIS_URL)


def redis_client(url: str) -> Any:
    """The process's client for a Redis URL, with the short timeouts (`guarded` keys its breaker on the URL)."""
    return _client(url, settings.MKTX_REDIS_TIMEOUT)


def redis_key(name: str) -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:{name}"


def redis_available(url: str | None = None) -> bool:
    """False while the breaker is open for `url` (REDIS_URL by default): a recent call failed."""
    return time.monotonic() >= _open_until.get(url or settings.REDIS_URL, 0.0)


def _failed(url: str, what: str, exc: Exception) -> None:
    with _lock:
        was_closed = time.monotonic() >= _open_until.get(url, 0.0)
        _open_until[url] = time.monotonic() + settings.MKTX_REDIS_RETRY_SECONDS
        _counters["failures"] += 1
        _counters["fail_open"] += 1
    log = logger.warning if was_closed else logger.info
    log(
        "Redis unavailable (%s failed: %s); failing open for %ss",
        what,
        type(exc).__name__,
        settings.MKTX_REDIS_RETRY_SECONDS,
    )


def _skipped() -> None:
    with _lock:
        _counters["fail_open"] += 1


def guarded(url: str, what: str, default: T, call: Callable[[], T]) -> T:
    """`call()`, or `default` when Redis at `url` fails or its breaker is open."""
    if not redis_available(url):
        _skipped()
        return default
    try:
        result = call()
    except (redis.RedisError, OSError) as exc:  # refused, silent, loading, out of memory: all fail open
        _failed(url, what, exc)
        return default
    with _lock:
        _open_until.pop(url, None)
    return result


def redis_call(what: str, default: T, call: Callable[[Any], T]) -> T:
    """`call(client)` on the shared client, failing open to `default` (see the module docstring)."""
    return guarded(settings.REDIS_URL, what, default, lambda: call(shared_redis()))


def redis_ping() -> bool:
    """Whether Redis answers now. Probes even when the breaker is open, and closes it when Redis is back."""
    with _lock:
        _open_until.pop(settings.REDIS_URL, None)
    return bool(redis_call("ping", False, lambda client: client.ping()))


def redis_counters() -> dict[str, int]:
    """This process's counts: Redis calls that failed, and answers given without Redis (failed or skipped)."""
    with _lock:
        return {"redisFailures": _counters["failures"], "redisFailOpen": _counters["fail_open"]}


def redis_breaker_reset() -> None:
    """Forget known outages (tests, and an operator who knows Redis is back)."""
    with _lock:
        _open_until.clear()


class FailOpenRedisCache(RedisCache):
    """Django's Redis cache with the same fail-open rule: reads miss, writes are dropped, while Redis is down.

    Its connections get the shared client's short timeouts and no retries unless OPTIONS say otherwise. `incr` is
    left as it is: it has no safe default.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        options: dict[str, Any] = params.get("OPTIONS", {})
        self._options = {**redis_client_options(settings.MKTX_REDIS_TIMEOUT), **options}
        self._location = server.replace(";", ",").split(",")[0]  # the breaker's key: the write server

    def _guard(self, what: str, default: T, call: Callable[[], T]) -> T:
        return guarded(self._location, f"cache {what}", default, call)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return self._guard("add", False, lambda: super(FailOpenRedisCache, self).add(key, value, timeout, version))

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._guard("get", default, lambda: super(FailOpenRedisCache, self).get(key, default, version))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> None:
        self._guard("set", None, lambda: super(FailOpenRedisCache, self).set(key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return self._guard("touch", False, lambda: super(FailOpenRedisCache, self).touch(key, timeout, version))

    def delete(self, key: Any, version: Any = None) -> bool:
        return self._guard("delete", False, lambda: super(FailOpenRedisCache, self).delete(key, version))

    def get_many(self, keys: Any, version: Any = None) -> dict[Any, Any]:
        return self._guard("get_many", {}, lambda: super(FailOpenRedisCache, self).get_many(keys, version))

    def has_key(self, key: Any, version: Any = None) -> bool:
        return self._guard("has_key", False, lambda: super(FailOpenRedisCache, self).has_key(key, version))

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list[Any]:
        return self._guard("set_many", [], lambda: super(FailOpenRedisCache, self).set_many(data, timeout, version))

    def delete_many(self, keys: Any, version: Any = None) -> None:
        self._guard("delete_many", None, lambda: super(FailOpenRedisCache, self).delete_many(keys, version))

    def clear(self) -> None:
        self._guard("clear", None, lambda: super(FailOpenRedisCache, self).clear())
