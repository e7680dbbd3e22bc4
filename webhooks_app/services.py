"""The inbound edge: store each event first (deduplicated), then process it through the handler table."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from mktx.accounts.models import Account
from mktx.accounts.selectors import active_account_for_x_user
from mktx.bulk import values_update
from mktx.memo import batch_memo, memo_forget, memoized
from mktx.queue import task_enqueue
from mktx.redis import redis_call, redis_key
from webhooks_app.events import DirectMessageEvent, RevokeEvent
from webhooks_app.handlers import HANDLERS, RUN_HANDLERS
from webhooks_app.models import EventStatus, InboundEvent
from webhooks_app.parser import PayloadError, RawEvent, parse_event, split_payload

logger = logging.getLogger("mktx.webhooks")

MAX_ATTEMPTS = 5
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1))
LOST_AFTER = timedelta(minutes=1)
LEASE = timedelta(minutes=10)  # a `processing` row (left by an older version) is freed after this
# a pending event claimed this recently is being processed, or its worker just died: not taken again before
CLAIM_GAP = timedelta(seconds=30)


KICK_KEY = "webhooks:inbound:kick"
KICK_TTL = 60
DRAIN_BATCH = 50  # claimed at once by a drain, and processed well within CLAIM_GAP
DRAIN_MAX = 5000
# a drain hands over to a fresh task after this long, well inside django-q's 120 s task timeout (found by
# bench/load.py: drains of a long backlog were killed at the timeout, and their workers started again)
DRAIN_SECONDS = 60
CLAIMED_LOCK_WAIT = 2.0  # seconds a drain looks again at a locked event it claimed (see _locked)
RUN_TRIES = 2  # a run of DMs that meets a deadlock is tried again once before its DMs go one by one


def inbound_events_store(*, body: Any, raw: str | None = None) -> int:
    """Store the events of one delivery (duplicates are dropped by their unique key) and make sure a drain task
    is queued after commit. `raw` is the body as received, kept as is when the delivery holds one event.
    Answers how many events the delivery held."""
    raw_events: list[RawEvent] = split_payload(body)
    _insert_new(raw_events, raw if len(raw_events) == 1 else None)
    transaction.on_commit(_kick)
    return len(raw_events)


def _insert_new(raw_events: list[RawEvent], raw: str | None) -> None:
    """One `INSERT ... ON CONFLICT DO NOTHING` statement, in autocommit: a single round trip on the hot path
    (the ORM's bulk_create would add a transaction around it: three)."""
    table = connection.ops.quote_name(InboundEvent._meta.db_table)
    received_at = connection.ops.adapt_datetimefield_value(timezone.now())
    row = "(%s, %s, %s, %s, 'pending', '', 0, '', %s)"
    params: list[Any] = []
    for event in raw_events:
        payload = raw if raw is not None else json.dumps(event.payload)
        params += [event.dedup_key, event.kind, event.for_user_id, payload, received_at]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (dedup_key, kind, for_user_id, payload, status, status_reason, attempts, "  # noqa: S608
            f"last_error, received_at) VALUES {', '.join([row] * len(raw_events))} ON CONFLICT (dedup_key) DO NOTHING",
            params,
        )


def _flag_add() -> bool | None:
    """Set the drain flag unless it is set; None when Redis is down. Redis directly when there is one: this runs
    on every delivery."""
    if settings.REDIS_URL:
        key = redis_key(KICK_KEY)
        return redis_call("inbound drain flag", None, lambda client: bool(client.set(key, 1, nx=True, ex=KICK_TTL)))
    return bool(cache.add(KICK_KEY, 1, timeout=KICK_TTL))


def _flag_clear() -> None:
    if settings.REDIS_URL:
        redis_call("inbound drain flag", None, lambda client: client.delete(redis_key(KICK_KEY)))
    else:
        cache.delete(KICK_KEY)


_last_kick = 0.0  # monotonic time this process last saw the flag set (by itself or another)


def _kick() -> None:
    """Make sure a drain task will look for pending events after this moment.

    The flag is set when a drain is queued and cleared by that drain before it looks, so an event committed while
    the flag is set is seen by the drain that owns the flag. A process that saw the flag set less than
    `grace / 2` ago skips the check: the owning drain clears the flag after that moment, and before it exits it
    looks once more after `grace`, which is later than any event this process committed in the meantime. One
    Redis call per process per few hundred milliseconds instead of one per delivery; the sweep catches a lost task.

    The event is stored before this runs, so nothing here may fail the delivery: with Redis down (and with it, in
    production, the task broker) no drain is queued and the minute sweep processes the event instead.
    """
    global _last_kick
    now = time.monotonic()
    window = settings.MKTX_INBOUND_DRAIN_GRACE / 2
    if window and now - _last_kick < window:
        return
    _last_kick = now
    if not _flag_add():  # set by another drain's owner, or Redis is down: the sweep drains
        return
    if not task_enqueue("webhooks_app.tasks.drain_inbound_events", task_name="inbound-drain"):
        _flag_clear()  # the broker is down: the event is stored, and the sweep picks it up


def inbound_events_drain(*, limit: int = DRAIN_MAX) -> dict[str, int]:
    """Process pending events oldest first, in batches, until none is left (or `limit`, then queue another)."""
    _flag_clear()
    counts: dict[str, int] = {}
    done = 0
    looked_again = False
    deadline = time.monotonic() + DRAIN_SECONDS
    while done < limit and time.monotonic() < deadline:
        now = timezone.now()
        pending = InboundEvent.objects.filter(status=EventStatus.PENDING).exclude(claimed_at__gte=now - CLAIM_GAP)
        ids = _claim(pending.order_by("pk")[:DRAIN_BATCH], now)  # this drain's own batch: drains never collide
        if not ids:
            if looked_again or not settings.MKTX_INBOUND_DRAIN_GRACE:
                return counts
            time.sleep(settings.MKTX_INBOUND_DRAIN_GRACE)  # see _kick: events that skipped the flag land by now
            looked_again = True
            continue
        looked_again = False
        with batch_memo():  # the batch's accounts, AI settings and flows read once
            for status, n in _process_claimed(ids).items():
                counts[status] = counts.get(status, 0) + n
        done += len(ids)
    _kick()
    return counts


def _account_for(event: Any) -> Account | None:
    """The active account an event is for: read once per drain batch (mktx/memo.py), except for a revocation,
    after which the batch reads it again. An account disconnected by another process meanwhile is seen from the
    next batch (a second or two); its sends check the account again."""
    if isinstance(event, RevokeEvent):
        memo_forget(("account", event.user_id))
        return active_account_for_x_user(event.user_id)
    for_user_id = getattr(event, "for_user_id", "")
    if not for_user_id:
        return None
    return memoized(("account", for_user_id), lambda: active_account_for_x_user(for_user_id))


def _finish(event_id: int, status: str, reason: str = "", **extra: Any) -> None:
    InboundEvent.objects.filter(pk=event_id).update(
        status=status, status_reason=reason[:300], processed_at=timezone.now(), **extra
    )


def inbound_event_process(*, event_id: int, claimed: bool = False) -> str | None:
    """Process one stored event if it is pending or failed; the resulting status, or None if not claimed.

    The claim is an attempt counted at once (`attempts`, `claimed_at`, committed); then the handler's writes and the
    outcome are one transaction, the event's row locked. A worker that dies or loses the database mid-processing
    leaves the event pending, taken again CLAIM_GAP after its claim (found by bench/chaos.py: PostgreSQL stopped in
    a webhook burst left the events being processed `processing` for 10 minutes); one that dies on it every time
    stops after MAX_ATTEMPTS."""
    now = timezone.now()
    claimable = Q(status=EventStatus.FAILED) | Q(
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_GAP), status=EventStatus.PENDING
    )
    if not claimed and not _claim(InboundEvent.objects.filter(claimable, pk=event_id), now):
        return None  # done, being processed, or claimed by another worker a moment ago
    with transaction.atomic():
        row = _locked(event_id, wait=CLAIMED_LOCK_WAIT if claimed else 0.0)
        if row is None:  # done meanwhile, or another worker holds it (its handler outlasted CLAIM_GAP)
            return None
        attempts = row.attempts
        if row.status == EventStatus.PENDING and attempts > MAX_ATTEMPTS:  # its earlier workers all died on it
            _finish(event_id, EventStatus.FAILED, "its worker stopped on every attempt; no more retries")
            return EventStatus.FAILED
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
        except Exception as exc:  # a database that went away fails the write below too: the claim rolls back
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


def _locked(event_id: int, *, wait: float) -> InboundEvent | None:
    """The event's row, locked, while it is pending or failed; a row another worker holds is skipped, or with `wait`
    looked at again for that long.

    A drain waits a moment for an event it claimed: another drain's claim statement can hold the row, since a row
    its scan locked and then found claimed stays locked until that statement's transaction ends, a few milliseconds.
    Skipping it left the event for CLAIM_GAP (found by bench/load.py: the lag rose to 29 s with nothing waiting). Not
    longer: a worker that took the event over after CLAIM_GAP holds it for its whole handler."""
    unfinished = InboundEvent.objects.filter(pk=event_id, status__in=[EventStatus.PENDING, EventStatus.FAILED])
    deadline = time.monotonic() + wait
    while True:
        row = unfinished.select_for_update(skip_locked=True).first()
        if row is not None or time.monotonic() >= deadline or not unfinished.exists():
            return row
        time.sleep(0.05)


def _claim(candidates: Any, now: datetime) -> list[int]:
    """Count an attempt on each candidate event (`claimed_at` now) and answer their ids, in one transaction; rows
    another worker holds are skipped (SKIP LOCKED), never waited for."""
    with transaction.atomic():
        ids = list(candidates.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if ids:
            InboundEvent.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1, claimed_at=now)
    return ids


def _process_claimed(ids: list[int]) -> dict[str, int]:
    """A drain's batch, in order: runs of customers' DMs recorded and answered together, in a transaction per run
    (webhooks_app/handlers.py, `direct_messages`); every other event one at a time, as is an event of a run that
    failed as a whole (each then gets its own outcome) or that another worker holds."""
    counts: dict[str, int] = {}
    rows = {row.pk: row for row in InboundEvent.objects.filter(pk__in=ids).only("pk", "kind", "payload", "attempts")}
    run: list[tuple[int, DirectMessageEvent, Account]] = []
    for event_id in ids:
        row = rows.get(event_id)
        dm = _customer_dm(row) if row is not None else None
        if dm is not None:
            run.append((event_id, *dm))
            continue
        _add(counts, _run_process(run))
        run = []
        _add(counts, _process_all([event_id], claimed=True))
    _add(counts, _run_process(run))
    return counts


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for status, n in more.items():
        counts[status] = counts.get(status, 0) + n


def _customer_dm(row: InboundEvent) -> tuple[DirectMessageEvent, Account] | None:
    """The event as a customer's DM to an active account, when it is one that a run may take."""
    if row.kind != "direct_message" or row.attempts > MAX_ATTEMPTS:
        return None
    try:
        event = parse_event(row.kind, row.payload)
    except PayloadError:
        return None
    if not isinstance(event, DirectMessageEvent) or event.is_echo:
        return None
    account = _account_for(event)  # the account of `for_user_id`: not the sender, since the DM is no echo
    return None if account is None else (event, account)


def _run_process(run: list[tuple[int, DirectMessageEvent, Account]]) -> dict[str, int]:
    """The DMs of a run, recorded and answered in one transaction with their events' outcome: the events this
    worker could lock (another may hold one a moment: see _locked) and that are still pending."""
    if not run:
        return {}
    taken: list[tuple[int, DirectMessageEvent, Account]] = []
    for attempt in range(1, RUN_TRIES + 1):
        try:
            taken = _run_once(run)
            break
        except OperationalError as exc:  # a deadlock, a lost connection: the run again, then one by one
            logger.warning("a run of %s inbound DMs failed (attempt %s): %s", len(run), attempt, exc)
        except Exception:  # the run as a whole, rolled back: each event again on its own, with its own outcome
            logger.exception("a run of %s inbound DMs failed; processing them one by one", len(run))
            break
    done = {event_id for event_id, _, _ in taken}
    counts = {EventStatus.PROCESSED.value: len(done)} if done else {}
    _add(counts, _process_all([event_id for event_id, _, _ in run if event_id not in done], claimed=True))
    return counts


def _run_once(run: list[tuple[int, DirectMessageEvent, Account]]) -> list[tuple[int, DirectMessageEvent, Account]]:
    """One transaction: the run's events locked (those free and pending), their DMs handled, their outcome. The
    events it took."""
    with transaction.atomic():
        free = set(
            InboundEvent.objects.filter(
                pk__in=[event_id for event_id, _, _ in run], status=EventStatus.PENDING, attempts__lte=MAX_ATTEMPTS
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        taken = [item for item in run if item[0] in free]
        RUN_HANDLERS[DirectMessageEvent]([(event, account) for _, event, account in taken])
        _finish_many([(event_id, account) for event_id, _, account in taken])
    return taken


def _finish_many(processed: list[tuple[int, Account]]) -> None:
    """`_finish(PROCESSED)` for many events, each with its account, in one statement."""
    opts = InboundEvent._meta
    now = timezone.now()
    values_update(
        InboundEvent,
        [
            ("k", opts.pk),
            ("account", opts.get_field("account").target_field),
            ("status", opts.get_field("status")),
            ("at", opts.get_field("processed_at")),
        ],
        [(event_id, account.pk, EventStatus.PROCESSED.value, now) for event_id, account in sorted(processed)],
        assignments="account_id = v.account, status = v.status, status_reason = '', processed_at = v.at, "
        "last_error = '', next_attempt_at = NULL",
    )


def _process_all(ids: list[int], *, claimed: bool = False) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event_id in ids:
        status = inbound_event_process(event_id=event_id, claimed=claimed) or "skipped"
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
        .update(status=EventStatus.PENDING, next_attempt_at=None, claimed_at=None)
    )
    return inbound_event_process(event_id=event_id) if reset else None
