"""Adding to the rollup, reading it, merging it and building it again (mktx/tallies/models.py).

The apps that own the counted rows name their metrics and call `tallies_add` in the transaction that writes the
rows, so a count is committed (or rolled back) with what it counts; `tallies_rebuild` computes an app's counts
from its rows again, for rows written without the services (an import, the demo seed) and for a first build."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Count as CountRows
from django.db.models import QuerySet, Sum
from django.db.models.functions import ExtractMinute, TruncHour
from django.utils import timezone

from mktx.tallies.models import Tally, TallyState

QUARTER = timedelta(minutes=15)
MERGE_BATCH = 2_000  # unmerged rows read per merge transaction

Count = tuple[Any, str, datetime, int]  # (account id, metric, when, n)


def bucket_of(at: datetime) -> datetime:
    """The quarter-hour (UTC) that holds `at`, by its start."""
    at = at.astimezone(UTC)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def aligned(at: datetime) -> bool:
    """Whether `at` starts a quarter-hour: a range with such bounds is a sum of whole buckets."""
    return bucket_of(at) == at


def tallies_add(counts: Iterable[Count]) -> None:
    """Add each (account, metric, when, n), summed per bucket first: one INSERT, no row updated."""
    summed: dict[tuple[Any, str, datetime], int] = defaultdict(int)
    for account_id, metric, at, n in counts:
        summed[(account_id, metric, bucket_of(at))] += n
    rows = [Tally(account_id=a, metric=m, bucket=b, n=n) for (a, m, b), n in summed.items() if n]
    if rows:
        Tally.objects.bulk_create(rows)


def tally_sum(
    account_ids: Sequence[Any], metric: str, start: datetime | None = None, end: datetime | None = None
) -> int:
    """The sum of `metric` over the buckets in [start, end) (from the beginning without `start`)."""
    rows = Tally.objects.filter(account_id__in=account_ids, metric=metric)
    if start is not None:
        rows = rows.filter(bucket__gte=start)
    if end is not None:
        rows = rows.filter(bucket__lt=end)
    return int(rows.aggregate(n=Sum("n"))["n"] or 0)


def _state() -> TallyState:
    """The state row, locked: building and merging never run at once."""
    TallyState.objects.get_or_create(pk=1)
    return TallyState.objects.select_for_update().get(pk=1)


def tallies_built() -> bool:
    return TallyState.objects.filter(pk=1, built_at__isnull=False).exists()


def tallies_freshness() -> dict[str, Any]:
    """When the rollup was last built and merged, and how many of its rows wait to be merged."""
    state = TallyState.objects.filter(pk=1).first()
    return {
        "builtAt": state.built_at if state else None,
        "mergedAt": state.merged_at if state else None,
        "unmerged": Tally.objects.filter(merged=False).count(),
    }


def grouped_by_quarter(
    rows: QuerySet[Any], field: str, keys: Sequence[str], n: str | None = None
) -> dict[tuple[Any, ...], int]:
    """`rows` counted (or `n` summed) per `keys` and quarter-hour of `field`: {(*keys, bucket): n}. Grouped by the
    hour and the minute in the database (in UTC), the quarters put together here: one query, one row per group."""
    grouped = (
        rows.filter(**{f"{field}__isnull": False})
        .annotate(_hour=TruncHour(field, tzinfo=UTC), _minute=ExtractMinute(field, tzinfo=UTC))
        .values(*keys, "_hour", "_minute")
        .annotate(_n=Sum(n) if n else CountRows("pk"))
        .order_by()
    )
    out: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in grouped.iterator(chunk_size=10_000):
        hour = row["_hour"] if row["_hour"].tzinfo else row["_hour"].replace(tzinfo=UTC)
        out[(*(row[key] for key in keys), hour + QUARTER * (int(row["_minute"]) // 15))] += int(row["_n"] or 0)
    return out


def grouped_counts(rows: QuerySet[Any], field: str, metric: str, n: str | None = None) -> list[Count]:
    """`rows` counted per account and quarter-hour of `field` as rollup counts of `metric`, for a rebuild."""
    found = grouped_by_quarter(rows, field, ["account_id"], n)
    return [(account_id, metric, at, total) for (account_id, at), total in found.items() if total]


def tallies_rebuild(
    metrics: Sequence[str], account_ids: Sequence[Any] | None, compute: Callable[[], Iterable[Count]]
) -> int:
    """Replace `metrics` (of `account_ids`, or of every account) with what `compute` finds in the rows. One
    snapshot on PostgreSQL (repeatable read), so a count added by a writer meanwhile is either in the rows read or
    kept, never both; the state row is locked against a merge. Inside a caller's transaction (the tests) the
    snapshot is the caller's to choose. Answers the rows written."""
    for attempt in range(3):
        try:
            return _rebuild(metrics, account_ids, compute)
        except OperationalError as exc:  # a merge committed between the snapshot and the lock: try again
            if getattr(exc.__cause__, "sqlstate", None) != "40001" or attempt == 2:
                raise
    return 0  # pragma: no cover - the loop returns or raises


def _rebuild(metrics: Sequence[str], account_ids: Sequence[Any] | None, compute: Callable[[], Iterable[Count]]) -> int:
    one_snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        if one_snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _state()
        old = Tally.objects.filter(metric__in=metrics)
        if account_ids is not None:
            old = old.filter(account_id__in=account_ids)
        old.delete()
        rows = [Tally(account_id=a, metric=m, bucket=bucket_of(b), n=n, merged=True) for a, m, b, n in compute()]
        Tally.objects.bulk_create(rows, batch_size=5_000)
        return len(rows)


def tallies_built_now() -> None:
    with transaction.atomic():
        state = _state()
        state.built_at = timezone.now()
        state.save(update_fields=["built_at"])


def tallies_merge() -> int:
    """Fold the unmerged rows into one row per bucket, a batch per transaction, until none is left. Answers the
    rows folded."""
    folded = 0
    while True:
        with transaction.atomic():
            state = _state()
            fresh = list(Tally.objects.filter(merged=False).values_list("account_id", "metric", "bucket")[:MERGE_BATCH])
            if not fresh:
                state.merged_at = timezone.now()
                state.save(update_fields=["merged_at"])
                return folded
            keys = set(fresh)
            by_key: dict[tuple[Any, str, datetime], tuple[int, list[int]]] = {}
            accounts = {account for account, _, _ in keys}
            buckets = {bucket for _, _, bucket in keys}
            rows = Tally.objects.filter(account_id__in=accounts, bucket__in=buckets, metric__in={m for _, m, _ in keys})
            for pk, account, metric, bucket, n in rows.values_list("pk", "account_id", "metric", "bucket", "n"):
                key = (account, metric, bucket)
                if key in keys:
                    total, ids = by_key.get(key, (0, []))
                    ids.append(pk)
                    by_key[key] = (total + n, ids)
            gone = [pk for _, ids in by_key.values() for pk in ids]
            for first in range(0, len(gone), MERGE_BATCH):
                Tally.objects.filter(pk__in=gone[first : first + MERGE_BATCH]).delete()
            Tally.objects.bulk_create(
                [Tally(account_id=a, metric=m, bucket=b, n=n, merged=True) for (a, m, b), (n, _) in by_key.items() if n]
            )
            folded += sum(len(ids) for _, ids in by_key.values())
