"""The campaigns' count in the rollup (mktx/tallies): `deliveries.attempted`, a delivery X was asked to send (sent
or failed: the metrics' `totalSent`), at the time of that answer, added when the delivery takes its final status
(the only way into `sent` or `failed`: campaigns/deliveries.py). Erasing a contact keeps its deliveries (anonymised),
so their counts stay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from campaigns.models import Delivery, DeliveryStatus
from mktx.tallies.services import Count, grouped_counts, tallies_add, tallies_rebuild

ATTEMPTED = "deliveries.attempted"
FINAL = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


def attempted_counted(answered: Sequence[tuple[Any, datetime]]) -> None:
    """(account, when answered) of each delivery that just became sent or failed."""
    tallies_add((account_id, ATTEMPTED, at, 1) for account_id, at in answered)


def rows_of(account_ids: Sequence[Any] | None) -> QuerySet[Delivery]:
    rows = Delivery.objects.all() if account_ids is None else Delivery.objects.filter(account_id__in=account_ids)
    return rows


def counts_of(deliveries: QuerySet[Delivery]) -> list[Count]:
    timed = deliveries.filter(status__in=FINAL).annotate(_at=Coalesce("attempted_at", "created_at"))
    return grouped_counts(timed, "_at", ATTEMPTED)


def campaigns_rollup_rebuild(account_ids: Sequence[Any] | None = None) -> int:
    deliveries = rows_of(account_ids)
    return tallies_rebuild([ATTEMPTED], account_ids, lambda: counts_of(deliveries))
