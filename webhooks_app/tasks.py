"""django-q2 tasks: they take keys or nothing, reload rows, call one service, and are safe to run twice."""

from __future__ import annotations

from webhooks_app.services import inbound_events_process_keys, inbound_events_sweep


def process_inbound_events(keys: list[str]) -> dict[str, int]:
    return inbound_events_process_keys(keys=keys)


def sweep_inbound_events() -> dict[str, int]:
    return inbound_events_sweep()
