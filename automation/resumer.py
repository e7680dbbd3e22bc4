"""The due-waits resumer: claims due executions in batches (`FOR UPDATE SKIP LOCKED` and a lease, so any number of
workers share them and a killed worker's executions are taken over once its lease ends) and advances them.

`resumer_run` is one loop (at most MKTX_FLOW_LANES at once, each holding a ResumerLane by lease) of passes
(`resumer_step`). The minute tick starts one; a loop stays while something is due before the next tick, sleeping
until then, so a wait ends on time rather than at the next tick; an execution whose wait is that close kicks one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from automation import queue
from automation.batch import executions_advance_many
from automation.engine import LEASE, LOOKAHEAD, resumer_awake
from automation.models import Execution, ExecutionStatus, ResumerLane
from mktx.lanes import LaneHeartbeat, lane_acquire, lane_release

BATCH = 200  # executions claimed at once
FRESH_SHARE = 20  # of each batch, the most recently due: a wait ending now is not stuck behind a backlog
PASS_BUDGET = 20.0  # seconds of one pass


def _claimable(now: datetime) -> Any:
    return Execution.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), status=ExecutionStatus.RUNNING, due_at__lte=now
    )


def due_claim(*, now: datetime, holder: str, limit: int = BATCH) -> list[Any]:
    """Lease up to `limit` due executions to `holder`: the longest due first, and a share of the most recently due
    (so one wait's lateness does not grow with a backlog). Rows another worker is claiming are skipped."""
    with transaction.atomic():
        locked = _claimable(now).select_for_update(skip_locked=True)
        oldest = list(locked.order_by("due_at").values_list("pk", flat=True)[: max(limit - FRESH_SHARE, 1)])
        fresh = list(
            locked.exclude(pk__in=oldest).order_by("-due_at").values_list("pk", flat=True)[: limit - len(oldest)]
        )
        ids = oldest + fresh
        if ids:
            Execution.objects.filter(pk__in=ids).update(lease_until=now + LEASE, lease_holder=holder)
    return ids


def next_due(now: datetime) -> datetime | None:
    """When the next execution is due (a leased one: when its lease ends)."""
    free = Execution.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), status=ExecutionStatus.RUNNING, due_at__isnull=False
    ).aggregate(at=Min("due_at"))["at"]
    leased = Execution.objects.filter(status=ExecutionStatus.RUNNING, lease_until__gte=now).aggregate(
        at=Min("lease_until")
    )["at"]
    found = [at for at in (free, leased) if at is not None]
    return min(found) if found else None


def resumer_step(now: datetime | None = None, *, on_backlog: Callable[[], None] | None = None) -> datetime | None:
    """Advance what is due (in batches, for up to PASS_BUDGET seconds). Answers when the next execution is due.
    `on_backlog` is called once when a claim comes back full (more is due than one claim)."""
    started = time.monotonic()
    while True:
        holder = uuid.uuid4().hex
        ids = due_claim(now=now or timezone.now(), holder=holder)
        if len(ids) == BATCH and on_backlog is not None:
            on_backlog()
            on_backlog = None
        if ids:
            executions_advance_many(execution_ids=ids, holder=holder)
        if len(ids) < BATCH or time.monotonic() - started > PASS_BUDGET:
            break
    return next_due(timezone.now())


def resumer_run(budget: float | None = None) -> str:
    """A resumer loop: passes until nothing is due within LOOKAHEAD or its budget (seconds) is spent; then a fresh
    task goes on if something is due soon. Answers a summary for the task log."""
    budget = settings.MKTX_FLOW_BUDGET_SECONDS if budget is None else budget
    holder = uuid.uuid4().hex
    lane = lane_acquire(ResumerLane, settings.MKTX_FLOW_LANES, holder)
    if lane is None:
        return "all resumer lanes busy"
    deadline = time.monotonic() + budget
    steps, wake = 0, None
    awake = resumer_awake.set(True)
    # a backlog wakes the other lanes (one more loop at a time: each that starts with a backlog wakes the next)
    more = queue.resumer_kick_now if settings.MKTX_FLOW_LANES > 1 and budget > 0 else None
    try:
        with LaneHeartbeat(ResumerLane, lane, holder, beating=budget > 0) as beat:
            while True:
                if steps and not beat.held():
                    wake = None  # another loop holds the lane now and goes on
                    break
                wake = resumer_step(on_backlog=more)
                more = None
                steps += 1
                if budget <= 0 or wake is None or time.monotonic() >= deadline:
                    break
                delay = (wake - timezone.now()).total_seconds()
                if delay > LOOKAHEAD.total_seconds():
                    break
                if delay > 0:
                    time.sleep(min(delay, 0.5, max(0.0, deadline - time.monotonic())))  # new waits are seen quickly
    finally:
        resumer_awake.reset(awake)
        lane_release(ResumerLane, lane, holder)
    if budget > 0 and wake is not None:
        wake = next_due(timezone.now())  # again, after the lane is free: a kick that came meanwhile found it busy
        if wake is not None and wake - timezone.now() <= LOOKAHEAD:
            queue.resumer_kick_now()
    return f"lane {lane}: {steps} passes, next at {wake.isoformat() if wake else 'nothing due'}"
