"""A campaign's send window, `schedule.sendWindow` `{"start": "09:00", "end": "21:00", "days": ["monday", ...]}`: its
DMs go out only inside it, read in the sending account's time zone. Pure functions: no database.

On each allowed local day the window is one stretch of real time: it opens at the first instant the clock reads
`start` (or later: a start inside a spring-forward gap opens when the clock jumps past it) and closes at the first
instant it reads `end`. An hour the clock repeats in autumn does not reopen a window that has closed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from mktx.accounts.business_hours import WEEKDAYS, is_valid_timezone, parse_hhmm
from mktx.api.errors import InvalidInput

FIELDS = ("start", "end", "days")
HHMM = "must be HH:MM (00:00 to 23:59)"


@dataclass(frozen=True)
class SendWindow:
    start: time
    end: time
    days: tuple[int, ...] = ()  # weekday numbers, 0 = monday; empty: every day

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError("a send window's start must be before its end")
        if any(day not in range(7) for day in self.days) or len(set(self.days)) != len(self.days):
            raise ValueError("a send window's days are distinct weekday numbers from 0 to 6")

    def allows(self, day: date) -> bool:
        return not self.days or day.weekday() in self.days

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "days": [WEEKDAYS[day] for day in self.days] or None,
        }


def _hhmm(window: dict[str, Any], key: str, field: str) -> time:
    if window.get(key) is None:
        raise InvalidInput(f"{field}.{key}", "is required")
    parsed = parse_hhmm(window[key])
    if parsed is None:
        raise InvalidInput(f"{field}.{key}", HHMM)
    return parsed


def _days(value: Any, field: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(f"{field}.days", "must be null or a list of weekday names")
    if not value:
        raise InvalidInput(f"{field}.days", "must name at least one day (null or absent: every day)")
    seen: set[int] = set()
    for index, name in enumerate(value):
        if name not in WEEKDAYS:
            raise InvalidInput(f"{field}.days[{index}]", f"must be one of {', '.join(WEEKDAYS)}")
        day = WEEKDAYS.index(name)
        if day in seen:
            raise InvalidInput(f"{field}.days[{index}]", "is listed twice")
        seen.add(day)
    return tuple(sorted(seen))


def parse_send_window(value: Any, field: str = "schedule.sendWindow") -> SendWindow | None:
    """The window `value` describes, or None for none; InvalidInput names the part at fault as `field...`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be null or an object with start, end and days")
    unknown = sorted(str(key) for key in value if key not in FIELDS)
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]}", "is not a send window field")
    start, end = _hhmm(value, "start", field), _hhmm(value, "end", field)
    if start >= end:
        raise InvalidInput(f"{field}.end", "must be after start")
    return SendWindow(start, end, _days(value.get("days"), field))


def window_timezone(business_hours: dict[str, Any] | None) -> ZoneInfo:
    """The account's time zone: its business hours' `timezone` (enabled or not) when valid, else UTC."""
    name = (business_hours or {}).get("timezone")
    return ZoneInfo(name) if isinstance(name, str) and is_valid_timezone(name) else ZoneInfo("UTC")


def _first_reading(day: date, at: time, tz: tzinfo) -> datetime:
    """The first instant (UTC) at which the clock in `tz` reads `at` or later on `day`."""
    local = datetime.combine(day, at, tzinfo=tz)  # fold=0: the first of a repeated time
    in_utc = local.astimezone(UTC)
    if in_utc.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return in_utc
    # `at` falls in a gap (clocks jumped forward over it): the answer is the jump. It lies after the reading with
    # the offset after the jump and no later than the one with the offset before it; find it to the second.
    low, high = local.replace(fold=1).astimezone(UTC), in_utc
    after = high.astimezone(tz).utcoffset()
    while (high - low).total_seconds() > 1:
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high


def _stretch(window: SendWindow, tz: tzinfo, now: datetime) -> tuple[datetime, datetime]:
    """The window's stretch (opens, closes) that contains `now` or, if none does, the next one."""
    today = now.astimezone(tz).date()
    # from the day before: after an autumn jump back over midnight the clock still shows yesterday's date
    for offset in range(-1, 15):
        day = today + timedelta(days=offset)
        if not window.allows(day):
            continue
        opens, closes = _first_reading(day, window.start, tz), _first_reading(day, window.end, tz)
        if opens < closes and now < closes:
            return opens, closes
    raise AssertionError("a send window opens at least once a fortnight")


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


def window_opening(window: SendWindow, tz: tzinfo, now: datetime) -> datetime:
    """`now` (in UTC) if the window is open then, else the next moment it opens."""
    now = _utc(now)
    opens, _ = _stretch(window, tz, now)
    return max(opens, now)


def window_closing(window: SendWindow, tz: tzinfo, now: datetime) -> datetime | None:
    """When the window open at `now` closes (UTC), or None when it is closed at `now`."""
    now = _utc(now)
    opens, closes = _stretch(window, tz, now)
    return closes if opens <= now else None
