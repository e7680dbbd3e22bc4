"""django-q2 tasks of automation: thin. They take ids, call one function, and are safe to run twice."""

from __future__ import annotations

from automation import engine, resumer


def advance_execution(execution_id: str) -> str:
    holder = engine.execution_lease(execution_id=execution_id)
    if holder is None:
        return "not due, or leased by another worker"
    return engine.execution_advance(execution_id=execution_id, holder=holder)


def run_resumer() -> str:
    """The resumer's minute tick (a django-q schedule made by migration 0002), and its kicks."""
    return resumer.resumer_run()
