"""Who sends to a segment: apps that keep segments in use (a scheduled or running campaign) register here from
their AppConfig.ready(), so `segment_delete` can refuse while one needs it without `contacts` knowing those apps or
their states (dependencies point one way, ARCHITECTURE.md; the same pattern as contacts/erasure.py)."""

from __future__ import annotations

from collections.abc import Callable

from contacts.models import Segment

SegmentUsers = Callable[[Segment], dict[str, list[str]]]  # e.g. {"campaignIds": [...]}: only the ones in use

_users: dict[str, SegmentUsers] = {}


def segment_users_register(name: str, users: SegmentUsers) -> None:
    """Register `users` under `name` (registered again: replaced, ready() may run more than once)."""
    _users[name] = users


def segment_users(segment: Segment) -> dict[str, list[str]]:
    """What uses the segment now, by kind (only kinds with something in use)."""
    found: dict[str, list[str]] = {}
    for users in _users.values():
        for kind, ids in users(segment).items():
            if ids:
                found.setdefault(kind, []).extend(ids)
    return found
