"""The parameters every report takes (CONTRACT.md "Analytics"): `startDate`, `endDate` (a date, the end day included,
or an ISO datetime), `timezone` (IANA, default UTC: day boundaries and buckets), `accountId` (the merchant's own, else
404), `groupBy` (`day`, ISO `week`, `month`) and `format` (`json`, `csv`). Each error is a 400 naming the parameter.
Internally the range is half-open, [start, end): a date's end is the next local midnight."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.request import Request

from mktx.accounts.business_hours import is_valid_timezone
from mktx.accounts.models import Account
from mktx.api.errors import InvalidInput, NotFoundError
from mktx.api.params import query_choice, query_uuid

GROUP_BY = ("day", "week", "month")
FORMATS = ("json", "csv")
MAX_DAYS = 366
DEFAULT_DAYS = 30
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Scope:
    """What a report counts: one merchant's rows (of one account when `account_id` is set) in [start, end)."""

    merchant_id: uuid.UUID
    account_ids: tuple[uuid.UUID, ...]  # the merchant's accounts, or the one asked for
    account_id: uuid.UUID | None
    start: datetime
    end: datetime
    zone: ZoneInfo
    group_by: str = "day"
    format: str = "json"

    @property
    def timezone_name(self) -> str:
        return str(self.zone.key)


def _instant(raw: str, name: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A date (local midnight; for the end, the next one) or a datetime (naive ones read in `zone`)."""
    try:
        day = parse_date(raw) if len(raw) == 10 else None
    except ValueError:  # well formed, but no such day: 2026-02-30
        raise InvalidInput(name, "is not a date that exists") from None
    if day is not None:
        if end:
            day = day + timedelta(days=1) if day < date.max else day
        return _in_range(datetime.combine(day, time(0), tzinfo=zone), name)
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidInput(name, "must be a date (YYYY-MM-DD) or an ISO 8601 datetime")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    moment = _in_range(moment, name)
    return moment + ONE_MICROSECOND if end else moment  # an end datetime is included


def _in_range(moment: datetime, name: str) -> datetime:
    """A moment the database can hold: its UTC form within years 1 to 9999, a day to spare either side."""
    if not (date.min + timedelta(days=1) < moment.replace(tzinfo=None).date() < date.max - timedelta(days=1)):
        raise InvalidInput(name, "is out of range")
    return moment


def _date_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


def report_scope(request: Request, *, merchant_id: uuid.UUID, dates_required: bool = False) -> Scope:
    zone_name = request.query_params.get("timezone") or "UTC"
    if not is_valid_timezone(zone_name):
        raise InvalidInput("timezone", "must be an IANA time zone such as Asia/Ho_Chi_Minh")
    zone = ZoneInfo(zone_name)
    group_by = query_choice(request, "groupBy", GROUP_BY) or "day"
    output = query_choice(request, "format", FORMATS) or "json"
    raw_start, raw_end = _date_param(request, "startDate"), _date_param(request, "endDate")
    if dates_required:
        for name, raw in (("startDate", raw_start), ("endDate", raw_end)):
            if raw is None:
                raise InvalidInput(name, "is required")
    today = datetime.now(zone).date()
    end = (
        _instant(raw_end, "endDate", zone, end=True)
        if raw_end
        else datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    )
    if raw_start:
        start = _instant(raw_start, "startDate", zone, end=False)
    else:
        last_day = (end - ONE_MICROSECOND).astimezone(zone).date()
        start = datetime.combine(last_day - timedelta(days=DEFAULT_DAYS - 1), time(0), tzinfo=zone)
    if end <= start:
        raise InvalidInput("endDate", "must not be before startDate")
    if end - start > timedelta(days=MAX_DAYS, hours=1):  # an hour for a daylight-saving day in the range
        raise InvalidInput("endDate", f"the range must not be over {MAX_DAYS} days")
    accounts = tuple(Account.objects.filter(merchant_id=merchant_id).order_by("pk").values_list("pk", flat=True))
    account_id = query_uuid(request, "accountId")
    if account_id is not None:
        if account_id not in accounts:
            raise NotFoundError("Account not found", details={"accountId": str(account_id)})
        accounts = (account_id,)
    return Scope(
        merchant_id=merchant_id,
        account_ids=accounts,
        account_id=account_id,
        start=start,
        end=end,
        zone=zone,
        group_by=group_by,
        format=output,
    )


def period(scope: Scope) -> dict[str, str]:
    """`{"startDate", "endDate", "timezone"}`: the first and the last instant counted, in the report's time zone."""
    last = scope.end - ONE_MICROSECOND
    return {
        "startDate": _iso(scope.start.astimezone(scope.zone)),
        "endDate": _iso(last.astimezone(scope.zone).replace(microsecond=0)),
        "timezone": scope.timezone_name,
    }


def _iso(moment: datetime) -> str:
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()
