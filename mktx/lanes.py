"""Lanes: at most N loops of one kind (the campaign sender's, the flow resumer's) run at once, each holding a row of
a lane model (`id`, `lease_until`, `holder`) by a short lease that it renews before every pass and, while a pass
runs, from a heartbeat thread (`LaneHeartbeat`, every third of the lease), however long the pass takes.

A loop killed with its worker (SIGKILL, a lost machine) cannot release its lane; the lease lets another loop take
it once it ends. Renewed while its process lives, the lease can be short (MKTX_LANE_LEASE_SECONDS, default 30 s)
instead of the whole loop's budget, so a killed loop's lane is free again within seconds rather than minutes. A
loop whose lease ran out anyway (its database connection lost for longer) and was taken meanwhile stops at its next
renewal: the cap holds."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger("mktx.lanes")


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


class LaneHeartbeat:
    """While open (`with LaneHeartbeat(model, lane, holder):`), a thread renews the lane's lease every third of it,
    on a connection of its own, so that a pass longer than the lease keeps the lane. `lost` turns True when a
    renewal finds another holder; the loop stops at its next check."""

    def __init__(self, model: Any, lane: int, holder: str, *, beating: bool = True) -> None:
        self.model, self.lane, self.holder, self.beating = model, lane, holder, beating
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lane-{lane}-heartbeat", daemon=True)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.MKTX_LANE_LEASE_SECONDS / 3):
                try:
                    if not lane_renew(self.model, self.lane, self.holder):
                        self.lost = True
                        return
                except DatabaseError as exc:  # the database is away: try again; the lease may run out meanwhile
                    logger.warning("lane %s: heartbeat could not renew: %s", self.lane, type(exc).__name__)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> LaneHeartbeat:
        if self.beating:  # a loop of one pass (budget 0: tests, MKTX_TASKS_SYNC) needs none
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.beating:
            self._thread.join()

    def held(self) -> bool:
        """Still this loop's: renewed now (before a pass), and no renewal found another holder."""
        return not self.lost and lane_renew(self.model, self.lane, self.holder)
