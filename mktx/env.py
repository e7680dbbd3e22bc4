"""Typed readers for environment variables that fail loudly on malformed values."""

from __future__ import annotations

import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day|s|m|h|d)\s*$", re.IGNORECASE)
_PERIODS = {"s": 1, "second": 1, "m": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def parse_rate(text: str) -> tuple[int, int]:
    """`"100/minute"` -> (100, 60): how many requests per how many seconds."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate like 100/minute")
    count, period = int(match.group(1)), _PERIODS[match.group(2).lower()]
    if count < 1:
        raise ValueError(f"{text!r} must allow at least one request")
    return count, period


def env_rate(name: str, default: str) -> tuple[int, int]:
    raw = os.environ.get(name, default)
    try:
        return parse_rate(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_url(name: str, default: str) -> str:
    raw = os.environ.get(name, default).strip()
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ImproperlyConfigured(f"{name}={raw!r} is not an http(s) URL")
    return raw.rstrip("/")
