"""The one module of automation that queues tasks (ARCHITECTURE.md: `queue.py`); its django-q schedule row (the
resumer's minute tick) is made by migration 0002.

Everything queued here has a second way to happen: an execution due now that no task advances is claimed by the
resumer (its minute tick), so a broker that is down only delays it."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mktx.queue import task_enqueue

ADVANCE_FUNC = "automation.tasks.advance_execution"
RESUMER_FUNC = "automation.tasks.run_resumer"


def advance_later(execution_id: Any) -> None:
    """Advance a new or resumed execution once the current transaction has committed."""
    transaction.on_commit(lambda: task_enqueue(ADVANCE_FUNC, str(execution_id), task_name="flow-advance"))


def resumer_kick_now() -> None:
    task_enqueue(RESUMER_FUNC, task_name="flow-resumer")


def resumer_kick() -> None:
    """A wait ends before the next minute tick: a resumer loop (one per lane at most) resumes it on time."""
    transaction.on_commit(resumer_kick_now)
