"""Business hours: `{"enabled", "timezone", "schedule": {"monday": {"start": "09:00", "end": "18:00"}, ...}}`."""

from __future__ import annotations

from datetime import datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_hhmm(value: Any) -> time | None:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    hours, minutes = value[:2], value[3:]
    if not (hours.isascii() and minutes.isascii() and hours.isdigit() and minutes.isdigit()):  # not "²²" or "٠٩"
        return None
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        return None
    return time(h, m)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """The IANA names the system knows: read once (`available_timezones` walks the zone files, some 25 ms). Not
    `localtime` (the server's own zone, whatever it is) nor `Factory` (a placeholder): files there, not zones."""
    return frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}


def is_valid_timezone(name: Any) -> bool:
    if not isinstance(name, str) or not name or name not in _zone_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def is_open(business_hours: dict[str, Any] | None, at: datetime) -> bool:
    """Whether `at` falls in the schedule. Hours that are not enabled mean always open."""
    if not business_hours or not business_hours.get("enabled"):
        return True
    local = at.astimezone(ZoneInfo(business_hours.get("timezone") or "UTC"))
    day = (business_hours.get("schedule") or {}).get(WEEKDAYS[local.weekday()])
    if not day:
        return False
    start, end = parse_hhmm(day.get("start")), parse_hhmm(day.get("end"))
    return bool(start and end and start <= local.time().replace(second=0, microsecond=0) < end)
