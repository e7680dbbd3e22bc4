"""The overview's largest counts from the rollup (mktx/tallies, kept by the services that write the rows: contacts/
services/rollup.py, campaigns/rollup.py) instead of the rows: the same definitions (analytics/definitions.py), read
from quarter-hour sums. Used when the rollup has been built and both ends of the range fall on a quarter-hour (every
time zone's midnight does today; a datetime such as 10:07 does not, and is read from the rows)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce

from analytics import definitions as d
from analytics.buckets import aggregates_by_bucket
from analytics.params import Scope
from campaigns.rollup import ATTEMPTED
from contacts.models import ContactActivity
from contacts.services import rollup as inbox
from mktx.tallies.models import Tally
from mktx.tallies.services import aligned, tallies_built

METRICS = (inbox.ARRIVED, inbox.NEW, inbox.INBOUND, inbox.OPENED, inbox.CLOSED, ATTEMPTED)


def usable(scope: Scope) -> bool:
    return aligned(scope.start) and aligned(scope.end) and tallies_built()


def sums(scope: Scope, metrics: tuple[str, ...] = METRICS) -> dict[str, dict[str, int]]:
    """Each metric summed before the range (`before`) and in it (`in`): one grouped query over the buckets."""
    rows = (
        Tally.objects.filter(account_id__in=scope.account_ids, metric__in=metrics, bucket__lt=scope.end)
        .values("metric")
        .annotate(before=Sum("n", filter=Q(bucket__lt=scope.start)), inside=Sum("n", filter=Q(bucket__gte=scope.start)))
        .order_by()
    )
    found = {row["metric"]: {"before": int(row["before"] or 0), "in": int(row["inside"] or 0)} for row in rows}
    return {metric: found.get(metric, {"before": 0, "in": 0}) for metric in metrics}


def contacts_active(scope: Scope) -> int:
    """The distinct contacts with a quarter-hour of activity in the range."""
    rows = ContactActivity.objects.filter(
        account_id__in=scope.account_ids, bucket__gte=scope.start, bucket__lt=scope.end
    )
    return int(rows.aggregate(n=Count("contact_id", distinct=True))["n"] or 0)


def overview_counts(scope: Scope) -> dict[str, Any]:
    """The counts of the overview that the rollup holds, by the names of analytics/definitions.py."""
    found = sums(scope)

    def upto_end(metric: str) -> int:
        return found[metric]["before"] + found[metric]["in"]

    open_at_start, open_at_end = _open_at(found)
    return {
        "contacts_total": upto_end(inbox.ARRIVED),
        "contacts_new": found[inbox.NEW]["in"],
        "contacts_active": contacts_active(scope),
        "opened": found[inbox.OPENED]["in"],
        "closed": found[inbox.CLOSED]["in"],
        "open_at_start": open_at_start,
        "open_at_end": open_at_end,
        "inbound": found[inbox.INBOUND]["in"],
        "outbound": d.messages_outbound(scope),
        "total_sent": found[ATTEMPTED]["in"],
    }


def _open_at(found: dict[str, dict[str, int]]) -> tuple[int, int]:
    """Open at a time: every opening before it, less every closing before it; at the range's start and end."""
    opened, closed = found[inbox.OPENED], found[inbox.CLOSED]
    start = opened["before"] - closed["before"]
    return max(0, start), max(0, start + opened["in"] - closed["in"])


def open_at_start_and_end(scope: Scope) -> tuple[int, int]:
    return _open_at(sums(scope, (inbox.OPENED, inbox.CLOSED)))


def conversation_series(scope: Scope) -> dict[str, dict[date, int]]:
    """Per bucket of the report: openings, closings and customers' DMs (one grouped query over the quarter-hours,
    each in the local day, week or month it starts in)."""
    rows = Tally.objects.filter(account_id__in=scope.account_ids)
    columns = {"opened": inbox.OPENED, "closed": inbox.CLOSED, "inbound": inbox.INBOUND}
    sums_of = {name: Coalesce(Sum("n", filter=Q(metric=metric)), 0) for name, metric in columns.items()}
    return aggregates_by_bucket(rows.filter(metric__in=columns.values()), "bucket", scope, sums_of)
