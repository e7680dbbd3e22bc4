"""django-q2 tasks: they take ids or nothing, reload rows, call one service, and are safe to run twice."""

from __future__ import annotations

from webhooks_app.services import inbound_events_drain, inbound_events_sweep


def drain_inbound_events() -> dict[str, int]:
    return inbound_events_drain()


def sweep_inbound_events() -> dict[str, int]:
    return inbound_events_sweep()
