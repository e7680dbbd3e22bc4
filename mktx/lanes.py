"""Lanes: at most N loops of one kind (the campaign sender's, the flow resumer's) run at once, each holding a row of
a lane model (`id`, `lease_until`, `holder`) by a short lease that it renews before every pass.

A loop killed with its worker (SIGKILL, a lost machine) cannot release its lane; the lease lets another loop take
it once it ends. Renewed every pass, the lease can be short (MKTX_LANE_LEASE_SECONDS, default 30 s: longer than a
pass's budget and one X call) instead of the whole loop's budget, so a killed loop's lane is free again within
seconds rather than minutes. A loop whose lease ran out and was taken meanwhile stops at its next renewal: the cap
holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone


def _until() -> Any:
    return timezone.now() + timedelta(seconds=settings.MKTX_LANE_LEASE_SECONDS)


def lane_acquire(model: Any, lanes: int, holder: str) -> int | None:
    """The first free lane of `model` (1..lanes), leased to `holder`; None when every lane is held."""
    now = timezone.now()
    for lane in range(1, lanes + 1):
        model.objects.get_or_create(pk=lane)
        if model.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=lane).update(
            lease_until=_until(), holder=holder
        ):
            return int(lane)
    return None


def lane_renew(model: Any, lane: int, holder: str) -> bool:
    """Extend the lease; False when `holder` no longer holds the lane (its lease ran out and another took it)."""
    return bool(model.objects.filter(pk=lane, holder=holder).update(lease_until=_until()))


def lane_release(model: Any, lane: int, holder: str) -> None:
    model.objects.filter(pk=lane, holder=holder).update(lease_until=None, holder="")
