"""The inbound edge: store each event first (deduplicated), then process it through the handler table."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from mktx.accounts.models import Account
from mktx.accounts.selectors import active_account_for_x_user
from webhooks_app.events import RevokeEvent
from webhooks_app.handlers import HANDLERS
from webhooks_app.models import EventStatus, InboundEvent
from webhooks_app.parser import PayloadError, RawEvent, parse_event, split_payload

logger = logging.getLogger("mktx.webhooks")

MAX_ATTEMPTS = 5
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1))
LOST_AFTER = timedelta(minutes=1)
LEASE = timedelta(minutes=10)


def inbound_events_store(*, body: Any) -> list[str]:
    """Store the events of one delivery; duplicates are dropped by their unique key. Answers the keys, whose
    processing is enqueued after commit (processing a key twice is harmless: it is claimed once)."""
    raw_events: list[RawEvent] = split_payload(body)
    InboundEvent.objects.bulk_create(
        [
            InboundEvent(dedup_key=e.dedup_key, kind=e.kind, for_user_id=e.for_user_id, payload=e.payload)
            for e in raw_events
        ],
        ignore_conflicts=True,
    )
    keys = [e.dedup_key for e in raw_events]
    transaction.on_commit(lambda: _enqueue(keys))
    return keys


def _enqueue(keys: list[str]) -> None:
    from django_q.tasks import async_task

    async_task("webhooks_app.tasks.process_inbound_events", keys, task_name="inbound-events")


def _account_for(event: Any) -> Account | None:
    if isinstance(event, RevokeEvent):
        return active_account_for_x_user(event.user_id)
    for_user_id = getattr(event, "for_user_id", "")
    return active_account_for_x_user(for_user_id) if for_user_id else None


def _finish(event_id: int, status: str, reason: str = "", **extra: Any) -> None:
    InboundEvent.objects.filter(pk=event_id).update(
        status=status, status_reason=reason[:300], processed_at=timezone.now(), **extra
    )


def inbound_event_process(*, event_id: int) -> str | None:
    """Process one stored event if it is pending or failed; the resulting status, or None if not claimed."""
    now = timezone.now()
    claimed = InboundEvent.objects.filter(pk=event_id, status__in=[EventStatus.PENDING, EventStatus.FAILED]).update(
        status=EventStatus.PROCESSING, attempts=F("attempts") + 1, claimed_at=now
    )
    if not claimed:
        return None
    row = InboundEvent.objects.get(pk=event_id)
    try:
        event = parse_event(row.kind, row.payload)
    except PayloadError as exc:
        _finish(event_id, EventStatus.IGNORED, f"malformed: {exc}")
        return EventStatus.IGNORED
    account = _account_for(event)
    if account is None:
        _finish(event_id, EventStatus.IGNORED, "no active connected account for this X user")
        return EventStatus.IGNORED
    handler = HANDLERS.get(type(event))
    if handler is None:
        _finish(event_id, EventStatus.IGNORED, f"no handler for {row.kind} events", account=account)
        return EventStatus.IGNORED
    try:
        with transaction.atomic():
            handler(event, account)
    except Exception as exc:
        attempts = row.attempts
        delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
        logger.exception("inbound event %s (%s) failed on attempt %s", event_id, row.kind, attempts)
        InboundEvent.objects.filter(pk=event_id).update(
            status=EventStatus.FAILED,
            status_reason="handler failed" if attempts < MAX_ATTEMPTS else "handler failed; no more retries",
            last_error=f"{type(exc).__name__}: {exc}"[:4000],
            account=account,
            next_attempt_at=now + delay if attempts < MAX_ATTEMPTS else None,
        )
        return EventStatus.FAILED
    _finish(event_id, EventStatus.PROCESSED, account=account, last_error="", next_attempt_at=None)
    return EventStatus.PROCESSED


def inbound_events_process_keys(*, keys: Iterable[str]) -> dict[str, int]:
    ids = InboundEvent.objects.filter(dedup_key__in=list(keys), status=EventStatus.PENDING).values_list("pk", flat=True)
    return _process_all(list(ids))


def _process_all(ids: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event_id in ids:
        status = inbound_event_process(event_id=event_id) or "skipped"
        counts[status] = counts.get(status, 0) + 1
    return counts


def inbound_events_sweep(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """The safety net run every minute: retries failed events whose backoff is over, processes events whose
    enqueue was lost, and frees events whose worker died mid-processing."""
    now = now or timezone.now()
    InboundEvent.objects.filter(status=EventStatus.PROCESSING, claimed_at__lt=now - LEASE).update(
        status=EventStatus.PENDING
    )
    due = InboundEvent.objects.filter(
        Q(status=EventStatus.FAILED, attempts__lt=MAX_ATTEMPTS, next_attempt_at__lte=now)
        | Q(status=EventStatus.PENDING, received_at__lte=now - LOST_AFTER)
    ).order_by("received_at")
    return _process_all(list(due.values_list("pk", flat=True)[:batch]))


def inbound_event_replay(*, event_id: int) -> str | None:
    """Run a stored event through processing again, whatever became of it (not while it is being processed)."""
    reset = (
        InboundEvent.objects.filter(pk=event_id)
        .exclude(status=EventStatus.PROCESSING)
        .update(status=EventStatus.PENDING, next_attempt_at=None)
    )
    return inbound_event_process(event_id=event_id) if reset else None
