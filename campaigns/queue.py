"""The one module of campaigns that queues tasks and owns django-q schedule rows (ARCHITECTURE.md: `queue.py`).

Each function is safe to call inside a transaction: what it queues goes after the commit. Everything queued here
has a second way to happen (the minute sweep, `campaigns.tasks.sweep_campaigns`), so a broker that is down only
delays it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from mktx.queue import task_enqueue

FIRE_FUNC = "campaigns.tasks.fire_campaign"
SENDER_FUNC = "campaigns.tasks.run_sender"
FREEZE_FUNC = "campaigns.tasks.freeze_run"


def _schedule_name(campaign_id: Any) -> str:
    return f"campaign:{campaign_id}"


def sender_kick_now() -> None:
    """Queue sender loops (each takes a lane or exits at once)."""
    lanes = 1 if settings.MKTX_SENDER_BUDGET_SECONDS == 0 else settings.MKTX_SENDER_LANES
    for _ in range(lanes):  # one that could not be queued: the minute sweep wakes the sender
        if not task_enqueue(SENDER_FUNC, task_name="campaign-sender"):
            return


def sender_kick() -> None:
    """Wake the sender once the current transaction has committed."""
    transaction.on_commit(sender_kick_now)


def run_freeze_enqueue(run_id: int) -> None:
    """A large audience is frozen by a worker after the commit (a lost one is queued again by the sweep)."""
    transaction.on_commit(lambda: task_enqueue(FREEZE_FUNC, run_id, task_name="campaign-freeze"))


def fire_schedule_set(campaign_id: Any, at: Any) -> None:
    """A django-q2 one-off schedule fires the campaign's next occurrence at `at` (None: none is due). The minute
    sweep fires one whose schedule row was lost."""
    from django_q.models import Schedule as QSchedule

    QSchedule.objects.filter(name=_schedule_name(campaign_id)).delete()
    if at is None:
        return
    QSchedule.objects.create(
        name=_schedule_name(campaign_id),
        func=FIRE_FUNC,
        args=repr(str(campaign_id)),
        schedule_type=QSchedule.ONCE,
        repeats=-1,
        next_run=at,
    )


def fire_schedule_clear(campaign_id: Any) -> None:
    fire_schedule_set(campaign_id, None)
