"""A campaign's `schedule`: `startAt`, `endAt`, `recurrence` (`{"frequency", "interval", "until"}`) and `sendWindow`
(campaigns/send_window.py), checked and turned into occurrence times. Pure functions: no database."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from campaigns.send_window import SendWindow, parse_send_window
from contacts.serializers import iso
from mktx.api.errors import InvalidInput

FREQUENCIES = ("daily", "weekly", "monthly")
MAX_INTERVAL = 365
# schedule times outside these are typing mistakes, and near Python's limits the occurrence arithmetic overflows
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
# an occurrence fired later than this (an outage, a run that outlasted the interval) is skipped, not sent late:
# the shortest interval is a day, so at most one occurrence is ever due at once
MISSED_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Schedule:
    start_at: datetime | None
    end_at: datetime | None
    frequency: str | None = None
    interval: int = 1
    until: date | None = None
    send_window: SendWindow | None = None

    @property
    def recurring(self) -> bool:
        return self.frequency is not None

    def as_json(self) -> dict[str, Any]:
        recurrence = None
        if self.frequency:
            recurrence = {
                "frequency": self.frequency,
                "interval": self.interval,
                "until": self.until.isoformat() if self.until else None,
            }
        return {
            "startAt": iso(self.start_at),
            "endAt": iso(self.end_at),
            "recurrence": recurrence,
            "sendWindow": self.send_window.as_json() if self.send_window else None,
        }


def _datetime(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:  # a well-formed but impossible date (2024-02-30) raises instead of answering None
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        raise InvalidInput(field, "is not a valid date-time (no such day or time)") from None
    if parsed is None:
        raise InvalidInput(field, "must be an ISO 8601 date-time such as 2026-01-20T10:00:00Z")
    if timezone.is_naive(parsed):
        raise InvalidInput(field, "must carry a time zone (Z or +hh:mm)")
    try:  # year 1 east of UTC or 9999-12-31 west of it have no UTC time in Python's range
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise InvalidInput(field, f"must be between {EARLIEST.year} and {LATEST.year - 1}")
    return in_utc


def parse_schedule(value: Any) -> Schedule:
    if value is None:
        return Schedule(None, None)
    if not isinstance(value, dict):
        raise InvalidInput("schedule", "must be an object with startAt, endAt, recurrence and sendWindow")
    unknown = set(value) - {"startAt", "endAt", "recurrence", "sendWindow"}
    if unknown:
        raise InvalidInput(f"schedule.{sorted(unknown)[0]}", "is not a schedule field")
    start_at = _datetime(value.get("startAt"), "schedule.startAt")
    end_at = _datetime(value.get("endAt"), "schedule.endAt")
    if start_at and end_at and end_at <= start_at:
        raise InvalidInput("schedule.endAt", "must be after startAt")
    send_window = parse_send_window(value.get("sendWindow"))
    recurrence = value.get("recurrence")
    if recurrence is None:
        return Schedule(start_at, end_at, send_window=send_window)
    if not isinstance(recurrence, dict):
        raise InvalidInput("schedule.recurrence", "must be null or {frequency, interval, until}")
    unknown = set(recurrence) - {"frequency", "interval", "until"}
    if unknown:
        raise InvalidInput(f"schedule.recurrence.{sorted(unknown)[0]}", "is not a recurrence field")
    frequency = recurrence.get("frequency")
    if frequency not in FREQUENCIES:
        raise InvalidInput("schedule.recurrence.frequency", f"must be one of {', '.join(FREQUENCIES)}")
    interval = recurrence.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_INTERVAL:
        raise InvalidInput("schedule.recurrence.interval", f"must be a whole number from 1 to {MAX_INTERVAL}")
    until_raw = recurrence.get("until")
    until = None
    if until_raw is not None:
        try:
            until = parse_date(until_raw) if isinstance(until_raw, str) else None
        except ValueError:
            raise InvalidInput("schedule.recurrence.until", "is not a valid date (no such day)") from None
        if until is None:
            raise InvalidInput("schedule.recurrence.until", "must be a date such as 2026-03-31")
        if not EARLIEST.date() <= until < LATEST.date():
            raise InvalidInput("schedule.recurrence.until", f"must be between {EARLIEST.year} and {LATEST.year - 1}")
        if start_at and until < start_at.date():
            raise InvalidInput("schedule.recurrence.until", "must not be before startAt")
    return Schedule(start_at, end_at, frequency, interval, until, send_window)


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def occurrence(schedule: Schedule, first: datetime, number: int) -> datetime | None:
    """When occurrence `number` (1 = the first) fires, or None when the recurrence has ended."""
    if number == 1:
        return first
    if not schedule.recurring:
        return None
    steps = (number - 1) * schedule.interval
    try:
        if schedule.frequency == "daily":
            at = first + timedelta(days=steps)
        elif schedule.frequency == "weekly":
            at = first + timedelta(weeks=steps)
        else:
            at = _add_months(first, steps)
    except (OverflowError, ValueError):  # past the year 9999: the recurrence has ended
        return None
    if schedule.until and at.date() > schedule.until:
        return None
    return at


def run_window(schedule: Schedule, first: datetime, at: datetime) -> datetime | None:
    """When an occurrence starting at `at` stops sending: `endAt` for a single send; for a recurrence, `endAt`
    gives each occurrence the same length as the first (endAt - startAt)."""
    if schedule.end_at is None:
        return None
    if not schedule.recurring:
        return schedule.end_at
    return at + (schedule.end_at - first)


@dataclass(frozen=True)
class CatchUp:
    """What to do with a recurrence whose occurrence `index` is due: fire occurrence `index` at `at` now (`due`),
    or wait for it (`at` in the future; None: the recurrence has ended), having skipped `skipped` missed ones."""

    index: int
    at: datetime | None
    due: bool
    skipped: int = 0
    last_skipped: datetime | None = None


def catch_up(schedule: Schedule, first: datetime, index: int, now: datetime) -> CatchUp:
    """Occurrence `index` of the recurrence anchored at `first` is due by `now`: skip every occurrence missed by
    more than MISSED_GRACE (each would re-freeze the audience and send again, back to back) and answer the one to
    fire or to wait for. A single send is never skipped: late, it still goes."""
    at = occurrence(schedule, first, index)
    skipped, last = 0, None
    while schedule.recurring and at is not None and now - at > MISSED_GRACE:
        skipped, last = skipped + 1, at
        index += 1
        at = occurrence(schedule, first, index)
    return CatchUp(index, at, at is not None and at <= now, skipped, last)
