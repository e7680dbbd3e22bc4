"""Direct Redis access for the few hot paths where Django's cache API costs too much (it builds a client per call):
one client per process, and keys under the cache's prefix so `cache.clear()` and other deployments keep apart."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings


@functools.cache
def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def shared_redis() -> Any:
    """The process's Redis client for REDIS_URL (callers check that it is set)."""
    return _client(settings.REDIS_URL)


def redis_key(name: str) -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:{name}"
