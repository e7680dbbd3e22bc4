"""The overview's largest counts from the rollup (mktx/tallies, kept by the services that write the rows: contacts/
services/rollup.py, campaigns/rollup.py) instead of the rows: the same definitions (analytics/definitions.py), read
from quarter-hour sums. Used when the rollup has been built and both ends of the range fall on a quarter-hour (every
time zone's midnight does today; a datetime such as 10:07 does not, and is read from the rows)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, Sum

from analytics import definitions as d
from analytics.params import Scope
from campaigns.rollup import ATTEMPTED
from contacts.models import ContactActivity
from contacts.services import rollup as inbox
from mktx.tallies.models import Tally
from mktx.tallies.services import aligned, tallies_built

METRICS = (inbox.ARRIVED, inbox.NEW, inbox.INBOUND, inbox.OPENED, inbox.CLOSED, ATTEMPTED)


def usable(scope: Scope) -> bool:
    return aligned(scope.start) and aligned(scope.end) and tallies_built()


def sums(scope: Scope) -> dict[str, dict[str, int]]:
    """Each metric summed before the range (`before`) and in it (`in`): one grouped query over the buckets."""
    rows = (
        Tally.objects.filter(account_id__in=scope.account_ids, metric__in=METRICS, bucket__lt=scope.end)
        .values("metric")
        .annotate(before=Sum("n", filter=Q(bucket__lt=scope.start)), inside=Sum("n", filter=Q(bucket__gte=scope.start)))
        .order_by()
    )
    found = {row["metric"]: {"before": int(row["before"] or 0), "in": int(row["inside"] or 0)} for row in rows}
    return {metric: found.get(metric, {"before": 0, "in": 0}) for metric in METRICS}


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

    opened, closed = found[inbox.OPENED], found[inbox.CLOSED]
    return {
        "contacts_total": upto_end(inbox.ARRIVED),
        "contacts_new": found[inbox.NEW]["in"],
        "contacts_active": contacts_active(scope),
        "opened": opened["in"],
        "closed": closed["in"],
        "open_at_start": max(0, opened["before"] - closed["before"]),
        "open_at_end": max(0, upto_end(inbox.OPENED) - upto_end(inbox.CLOSED)),
        "inbound": found[inbox.INBOUND]["in"],
        "outbound": d.messages_outbound(scope),
        "total_sent": found[ATTEMPTED]["in"],
    }
