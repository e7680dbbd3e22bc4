"""Series buckets in the report's time zone: `day`, ISO `week` (Monday first) or `month`, each named by the local
date it starts on, zero-filled over the whole range. The database truncates (Django's `Trunc` with the zone: `AT TIME
ZONE` on PostgreSQL, its own functions on SQLite); Python only lays the counts on the list of buckets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Count, Func, Q, QuerySet
from django.db.models.functions import Trunc

from analytics.params import ONE_MICROSECOND, Scope


def bucket_of(day: date, group_by: str) -> date:
    if group_by == "week":
        return day - timedelta(days=day.weekday())
    if group_by == "month":
        return day.replace(day=1)
    return day


def bucket_starts(scope: Scope) -> list[date]:
    """Every bucket the range touches, in order."""
    first = bucket_of(scope.start.astimezone(scope.zone).date(), scope.group_by)
    last = bucket_of((scope.end - ONE_MICROSECOND).astimezone(scope.zone).date(), scope.group_by)
    buckets, day = [], first
    while day <= last:
        buckets.append(day)
        if scope.group_by == "month":
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            day += timedelta(days=7 if scope.group_by == "week" else 1)
    return buckets


def _key(value: Any, scope: Scope) -> date:
    if isinstance(value, datetime):
        value = value.astimezone(scope.zone).date() if value.tzinfo else value.date()
    return bucket_of(value, scope.group_by)


def counts_by_bucket(
    rows: QuerySet[Any], field: str, scope: Scope, *, count: str = "pk", distinct: bool = False
) -> dict[date, int]:
    """`COUNT(count)` of `rows` whose `field` falls in the range, grouped by the bucket of `field`."""
    return aggregates_by_bucket(rows, field, scope, {"n": Count(count, distinct=distinct)})["n"]


def counts_by_bucket_each(
    rows: QuerySet[Any], field: str, scope: Scope, counts: Mapping[str, Q]
) -> dict[str, dict[date, int]]:
    """Several filtered counts of `rows` by the bucket of `field`, in one grouped query: {name: {bucket: n}}."""
    return aggregates_by_bucket(rows, field, scope, {name: Count("pk", filter=where) for name, where in counts.items()})


def aggregates_by_bucket(
    rows: QuerySet[Any], field: str, scope: Scope, aggregates: Mapping[str, Aggregate | Func]
) -> dict[str, dict[date, int]]:
    """The `aggregates` of `rows` whose `field` falls in the range, grouped by the bucket of `field`, in one
    query: {name: {bucket: value}}."""
    in_range = rows.filter(**{f"{field}__gte": scope.start, f"{field}__lt": scope.end})
    grouped = (
        in_range.annotate(_bucket=Trunc(field, scope.group_by, tzinfo=scope.zone))
        .values("_bucket")
        .annotate(**{f"n_{name}": aggregate for name, aggregate in aggregates.items()})
        .order_by()
    )
    found: dict[str, dict[date, int]] = {name: {} for name in aggregates}
    for row in grouped:
        key = _key(row["_bucket"], scope)
        for name in aggregates:
            found[name][key] = found[name].get(key, 0) + int(row[f"n_{name}"])
    return found


def series(scope: Scope, columns: Mapping[str, Mapping[date, int]]) -> list[dict[str, Any]]:
    """`[{"date", <column>: n, ...}]` over every bucket of the range, zeros where nothing happened."""
    return [
        {"date": day.isoformat(), **{name: int(counts.get(day, 0)) for name, counts in columns.items()}}
        for day in bucket_starts(scope)
    ]


def total(counts: Iterable[int]) -> int:
    return int(sum(counts))
