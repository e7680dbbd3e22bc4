"""The sender's lanes: `sender_run` is one loop (at most MKTX_SENDER_LANES at once, each in a django-q worker) of
passes (`sender_step`): the lifecycle's sweeps, then every account whose slot is open sends, an account that X
lets send back to back a batch of its own, the accounts at X's pace their turns together; a pass answers when
something is next due, and the loop sleeps until then or hands over to a fresh task."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from campaigns import lifecycle, queue
from campaigns.deliveries import leases_reconcile
from campaigns.models import AccountPacing, Delivery, DeliveryStatus, SenderLane
from campaigns.pacing import SlotRelease, XWindow, next_send, slots_release, slots_take
from campaigns.send_window import SendWindow, window_closing, window_opening, window_timezone
from campaigns.sender import BACK_TO_BACK, AccountRun, accounts_send, due_deliveries
from mktx.accounts.models import Account
from mktx.lanes import LaneHeartbeat, lane_acquire, lane_release

logger = logging.getLogger("mktx.campaigns.sender")

PASS_BUDGET = timedelta(seconds=20)  # one pass over the accounts; the next pass goes on where the turns are
HAND_OVER = timedelta(seconds=90)  # a lane sleeps until a slot this close; a later one is the minute sweep's
BATCH_MAX = 50  # deliveries claimed at once for an account that X lets send back to back
TURNS_MAX = 100  # accounts at X's pace whose next DMs go in one batch
HELD_RECHECK = timedelta(seconds=1)  # a slot another lane holds is looked at again this soon (not at its hold's end)
# a DM reaches X a moment after its send begins (the Message is stored first): none begins in a window's last second
WINDOW_MARGIN = timedelta(seconds=1)
# the account's fields a pass reads, the tokens included: the sends sign with them (deferred, each pass would read
# them again, one query apiece)
SENDING_FIELDS = ("pk", "business_hours", "status", "username", "oauth_token_encrypted", "oauth_token_secret_encrypted")


def sender_step(now: datetime | None = None, *, holder: str | None = None) -> datetime | None:
    """One pass: the lifecycle's sweeps, then each account whose slot is open sends (a batch or one DM). Answers
    when something is next due (None: nothing is waiting)."""
    now = now or timezone.now()
    holder = holder or uuid.uuid4().hex
    lifecycle.campaigns_fire_due(now)
    lifecycle.runs_expire(now)
    leases_reconcile(now)
    lifecycle.inactive_accounts_skip()
    windows = lifecycle.running_send_windows()
    wake: list[datetime] = []
    has_due = Exists(due_deliveries(now).filter(account_id=OuterRef("pk")))
    # the accounts whose turn came first go first; a pass stops at PASS_BUDGET and answers "now" for the rest
    accounts = list(
        Account.objects.filter(has_due)
        .order_by(F("pacing__next_send_at").asc(nulls_first=True), "pk")
        .only(*SENDING_FIELDS)
    )
    pacing = {p.pk: p for p in AccountPacing.objects.filter(pk__in=[a.pk for a in accounts])}
    pass_ends = time.monotonic() + PASS_BUDGET.total_seconds()
    turns: dict[Any, tuple[list[Account], set[Any], dict[Any, datetime]]] = {}  # accounts at X's pace, by window
    for account in accounts:
        if time.monotonic() >= pass_ends:
            wake.append(timezone.now())
            break
        at = max(now, timezone.now())  # a pass over many accounts takes a while: leases and holds start now
        slot = pacing.get(account.pk)
        if slot is not None and slot.next_send_at is not None and slot.next_send_at > at:
            # not this account's turn; or another lane sends for it now, and gives it back long before its hold ends
            wake.append(min(slot.next_send_at, at + HELD_RECHECK) if slot.holder else slot.next_send_at)
            continue
        closed, closings = _window_states(windows, account, at, wake)
        first_next, _ = next_send(XWindow.stored(slot), at)
        if first_next - at <= BACK_TO_BACK:  # X lets it send back to back: a batch of its own
            _turn([account], pacing, at, closed, closings, holder, BATCH_MAX, wake)
            continue
        key = (frozenset(closed), tuple(sorted(closings.items())))
        group = turns.setdefault(key, ([], closed, closings))[0]
        group.append(account)
        if len(group) >= TURNS_MAX:
            _turn(group, pacing, at, closed, closings, holder, 1, wake)
            del turns[key]
    for group, closed, closings in turns.values():
        _turn(group, pacing, max(now, timezone.now()), closed, closings, holder, 1, wake)
    lifecycle.runs_complete(now)
    wake += _later_work(now)
    return min(wake) if wake else None


def _turn(
    accounts: list[Account],
    pacing: dict[Any, AccountPacing],
    at: datetime,
    closed: set[Any],
    closings: dict[Any, datetime],
    holder: str,
    limit: int,
    wake: list[datetime],
) -> None:
    """Take the accounts' slots, send (`accounts_send`), give the slots back with each account's next time."""
    taken = slots_take([a.pk for a in accounts], at, holder)
    if len(taken) < len(accounts):  # another lane took them since the pass began: look again soon
        wake.append(at + HELD_RECHECK)
    accounts = [a for a in accounts if a.pk in taken]
    if not accounts:
        return
    runs: dict[Any, AccountRun] = {}
    try:
        runs = accounts_send(accounts, pacing, at, closed, closings, limit=limit)
    except Exception:  # one batch's trouble (a row, a bug) must not stop every other account's sends
        logger.exception(
            "sender: the sends of %s accounts failed; their deliveries wait for their lease", len(accounts)
        )
    finally:
        releases = [_release(account.pk, runs.get(account.pk), at) for account in accounts]
        slots_release(holder, releases)
        wake += [r.next_at for r in releases if r.reason != "idle"]


def _release(account_id: Any, run: AccountRun | None, at: datetime) -> SlotRelease:
    """What an account's slot is given back with: its run's next time and X's window as X answered it; `at` (look
    again now) when its sends raised before the run said."""
    if run is None:
        return SlotRelease(account_id, at, "", None, None)
    window = run.window if run.heard else None
    return SlotRelease(account_id, run.next_at or at, run.reason, window, run.last_sent_at)


def _window_states(
    windows: dict[Any, SendWindow], account: Account, now: datetime, wake: list[datetime]
) -> tuple[set[Any], dict[Any, datetime]]:
    """In the account's time zone: the campaigns whose send window is closed now, or closes within WINDOW_MARGIN
    (their next openings join `wake`), and for each open one the last moment a send of it may begin."""
    closed: set[Any] = set()
    last_starts: dict[Any, datetime] = {}
    if not windows:
        return closed, last_starts
    zone = window_timezone(account.business_hours)
    for campaign_id, window in windows.items():
        opening = window_opening(window, zone, now)
        if opening <= now:
            closing = window_closing(window, zone, now)
            if closing is not None and closing - now > WINDOW_MARGIN:
                last_starts[campaign_id] = closing - WINDOW_MARGIN
                continue
            opening = window_opening(window, zone, closing or now + WINDOW_MARGIN)
        closed.add(campaign_id)
        wake.append(opening)
    return closed, last_starts


def _later_work(now: datetime) -> list[datetime]:
    """Retries and deferrals due later (a paused campaign's too: waking for them once is harmless), and leases."""
    later = (
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    leased = (
        Delivery.objects.filter(status=DeliveryStatus.SENDING)
        .order_by("lease_until")
        .values_list("lease_until", flat=True)
        .first()
    )
    return [at for at in (later, leased) if at is not None]


def sender_run(budget: float | None = None) -> str:
    """A sender loop: steps until nothing is due within its budget (seconds), sleeping until the next slot.
    At most MKTX_SENDER_LANES loops run at once. Answers a summary for the task log."""
    budget = settings.MKTX_SENDER_BUDGET_SECONDS if budget is None else budget
    holder = uuid.uuid4().hex
    lane = lane_acquire(SenderLane, settings.MKTX_SENDER_LANES, holder)
    if lane is None:
        return "all sender lanes busy"
    deadline = time.monotonic() + budget
    steps, wake = 0, None
    try:
        with LaneHeartbeat(SenderLane, lane, holder, beating=budget > 0) as beat:
            while True:
                if steps and not beat.held():
                    return f"lane {lane}: lost after {steps} steps (its lease ran out)"
                wake = sender_step(holder=holder)
                steps += 1
                if budget <= 0 or wake is None:
                    break
                delay = (wake - timezone.now()).total_seconds()
                if delay > HAND_OVER.total_seconds() or time.monotonic() >= deadline:
                    break
                if delay > 0:
                    time.sleep(min(delay, 1.0, max(0.0, deadline - time.monotonic())))  # new work is seen quickly
    finally:
        lane_release(SenderLane, lane, holder)
    if budget > 0 and wake is not None and wake - timezone.now() <= HAND_OVER:
        queue.sender_kick_now()  # a fresh task goes on (what waits longer, the minute sweep wakes)
    return f"lane {lane}: {steps} steps, next at {wake.isoformat() if wake else 'nothing due'}"
