"""The state machine of campaigns, whole: `draft -> scheduled -> running <-> paused -> completed`, plus `cancelled`
and `failed`, and of their runs; every transition, the firing of occurrences and the sweeps that move them on.
Every state change is a conditional UPDATE on the current state, so two concurrent starts start once. Starting an
occurrence freezes its audience (audience.py) with one set-based `INSERT ... SELECT`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns import queue
from campaigns.audience import audience_freeze, check_startable
from campaigns.campaigns import InvalidState, occurrence_index, schedule_of
from campaigns.models import Campaign, CampaignRun, CampaignStatus, Delivery, DeliveryStatus, RunStatus
from campaigns.schedule import MISSED_GRACE, CatchUp, catch_up, occurrence, run_window
from campaigns.send_window import SendWindow
from mktx.accounts.models import AccountStatus
from mktx.api.errors import ApiError, InvalidInput

logger = logging.getLogger("mktx.campaigns")

CANCELLABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
ACTIVE_RUN = Q(campaign__status=CampaignStatus.RUNNING, run__status=RunStatus.RUNNING)
# What the database answers while it is busy or away (deadlock, lock or statement timeout, a dropped connection):
# retried later, never the campaign's failure. The API answers the same errors 503.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)


def run_freeze(*, run_id: Any) -> int | None:
    """The freeze of a large audience, in a worker: once (the run row is locked and checked)."""
    try:
        with transaction.atomic():
            run = CampaignRun.objects.select_for_update().select_related("campaign").filter(pk=run_id).first()
            if run is None or run.audience_frozen_at is not None or run.status != RunStatus.RUNNING:
                return None
            count = audience_freeze(campaign=run.campaign, run=run)
            queue.sender_kick()
    except TRANSIENT_DATABASE_ERRORS:  # a deadlock, a timeout, a lost connection: the sweep queues it again
        logger.warning(
            "run %s: the freeze met a transient database error; it will be tried again", run_id, exc_info=True
        )
        return None
    except Exception as exc:  # else the sweep would queue the same failing freeze every minute, forever
        logger.exception("run %s: the audience could not be frozen", run_id)
        _run_failed(run_id, _failure_reason(exc))
        return None
    logger.info("campaign %s run %s: %s recipients frozen", run.campaign_id, run.number, count)
    return count


def _run_failed(run_id: Any, reason: str) -> None:
    now = timezone.now()
    campaign_id = CampaignRun.objects.filter(pk=run_id).values_list("campaign_id", flat=True).first()
    if campaign_id is None:
        return
    with transaction.atomic():
        CampaignRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.CANCELLED, finished_at=now
        )
        Campaign.objects.filter(pk=campaign_id, status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]).update(
            status=CampaignStatus.FAILED, status_reason=reason[:500], finished_at=now, next_run_at=None, updated_at=now
        )


def _begin_run(campaign: Campaign, at: datetime) -> CampaignRun:
    schedule = schedule_of(campaign)
    first = campaign.started_at or at
    number, index = campaign.run_count + 1, occurrence_index(campaign)
    run = CampaignRun.objects.create(
        campaign=campaign,
        number=number,
        started_at=at,
        ends_at=run_window(schedule, first, occurrence(schedule, first, index) or at),
    )
    estimate = sum(s.contact_count or 0 for s in campaign.segments.all())
    if estimate <= settings.MKTX_INLINE_FREEZE_LIMIT:
        audience_freeze(campaign=campaign, run=run)
    else:  # a large audience is frozen by a worker, not inside the API request
        queue.run_freeze_enqueue(run.pk)
    upcoming = occurrence(schedule, first, index + 1)
    Campaign.objects.filter(pk=campaign.pk).update(
        run_count=number, started_at=first, next_run_at=upcoming, status_reason=""
    )
    campaign.run_count, campaign.started_at, campaign.next_run_at = number, first, upcoming
    return run


def campaign_start(*, campaign: Campaign) -> Campaign:
    """draft -> running now, or -> scheduled for a future `startAt`."""
    if campaign.status != CampaignStatus.DRAFT:
        raise InvalidState(campaign, "start", [CampaignStatus.DRAFT])
    schedule = schedule_of(campaign)
    check_startable(campaign, schedule)
    now = timezone.now()
    if schedule.recurring and schedule.start_at is not None and now - schedule.start_at > MISSED_GRACE:
        raise InvalidInput("schedule.startAt", "has passed: give the recurrence a future start (or none: now)")
    with transaction.atomic():
        if schedule.start_at is not None and schedule.start_at > now:
            _move(campaign, "start", [CampaignStatus.DRAFT], CampaignStatus.SCHEDULED, next_run_at=schedule.start_at)
            queue.fire_schedule_set(campaign.pk, campaign.next_run_at)
            return campaign
        _move(campaign, "start", [CampaignStatus.DRAFT], CampaignStatus.RUNNING)
        _begin_run(campaign, schedule.start_at or now)
        queue.sender_kick()
    logger.info("campaign %s started", campaign.pk)
    return campaign


def campaign_fire(*, campaign_id: Any, now: datetime | None = None) -> bool:
    """A scheduled occurrence is due: scheduled -> running with a new run. Idempotent (the minute sweep and the
    one-off schedule may both fire it); a campaign that can no longer start becomes `failed` with the reason."""
    now = now or timezone.now()
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
        return False
    if campaign.next_run_at is None or campaign.next_run_at > now:
        return False
    schedule = schedule_of(campaign)
    plan = catch_up(schedule, campaign.started_at or campaign.next_run_at, occurrence_index(campaign), now)
    if plan.skipped and not _skip(campaign, plan, now):
        return False
    try:
        check_startable(campaign, schedule)
    except ApiError as exc:
        reason = f"{exc.details.get('field', '')}: {exc.message}"[:500]
        Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.SCHEDULED).update(
            status=CampaignStatus.FAILED, status_reason=reason, finished_at=now, next_run_at=None
        )
        logger.warning("campaign %s failed to start: %s", campaign.pk, reason)
        return False
    with transaction.atomic():
        moved = Campaign.objects.filter(
            pk=campaign.pk, status=CampaignStatus.SCHEDULED, next_run_at=campaign.next_run_at
        ).update(status=CampaignStatus.RUNNING, updated_at=now)
        if not moved:
            return False
        campaign.status = CampaignStatus.RUNNING
        _begin_run(campaign, campaign.next_run_at)
        queue.sender_kick()
    logger.info("campaign %s occurrence %s fired", campaign.pk, campaign.run_count)
    return True


def _skip(campaign: Campaign, plan: CatchUp, now: datetime) -> bool:
    """Record the occurrences missed by more than the grace, and move on to the one due now (answers True: fire
    it) or to the next one (scheduled for it, or completed when the recurrence ended meanwhile)."""
    assert campaign.next_run_at is not None
    first = campaign.started_at or campaign.next_run_at  # the recurrence's anchor, even when its first was skipped
    fields: dict[str, Any] = {
        "skipped_occurrences": campaign.skipped_occurrences + plan.skipped,
        "last_skipped_at": plan.last_skipped,
        "started_at": first,
        "next_run_at": plan.at,
        "updated_at": now,
    }
    if plan.at is None:
        fields |= {"status": CampaignStatus.COMPLETED, "finished_at": now}
    moved = Campaign.objects.filter(
        pk=campaign.pk, status=CampaignStatus.SCHEDULED, next_run_at=campaign.next_run_at
    ).update(**fields)
    if not moved:  # fired or changed meanwhile
        return False
    logger.warning("campaign %s: %s missed occurrences skipped", campaign.pk, plan.skipped)
    for name, value in fields.items():
        setattr(campaign, name, value)
    if not plan.due:
        queue.fire_schedule_set(campaign.pk, campaign.next_run_at)
    return plan.due


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.details.get('field', '')}: {exc.message}"
    # the exception's text may describe internals: the log has it, the merchant reads its kind
    return f"the occurrence could not be started ({type(exc).__name__}); support has the details"


def campaign_fire_or_fail(*, campaign_id: Any, now: datetime | None = None) -> bool:
    """`campaign_fire` with its failure kept to this campaign: the sweep and the sender loop fire every merchant's
    campaigns, so one that raises (a row an older version wrote, a query the database refuses) must not stop the
    others. Its work is rolled back to a savepoint and it becomes `failed` with the reason."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            return campaign_fire(campaign_id=campaign_id, now=now)
    except TRANSIENT_DATABASE_ERRORS:  # not the campaign's fault: it stays scheduled, the next sweep fires it
        logger.warning(
            "campaign %s: a transient database error; it will fire on the next sweep", campaign_id, exc_info=True
        )
        return False
    except Exception as exc:
        logger.exception("campaign %s could not fire", campaign_id)
        failed = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SCHEDULED).update(
            status=CampaignStatus.FAILED,
            status_reason=_failure_reason(exc)[:500],
            finished_at=now,
            next_run_at=None,
            updated_at=now,
        )
        if failed:
            queue.fire_schedule_clear(campaign_id)
        return False


def _move(campaign: Campaign, action: str, allowed: Iterable[str], to: str, **fields: Any) -> None:
    """The state change as a conditional UPDATE from the allowed states: whoever moves it first wins, the other
    gets InvalidState with the state it found."""
    allowed = list(allowed)
    moved = Campaign.objects.filter(pk=campaign.pk, status__in=allowed).update(
        status=to, updated_at=timezone.now(), **fields
    )
    if not moved:
        campaign.refresh_from_db()
        raise InvalidState(campaign, action, allowed)
    campaign.status = to
    for name, value in fields.items():
        setattr(campaign, name, value)


def campaign_pause(*, campaign: Campaign) -> Campaign:
    """running -> paused: the sender claims nothing of a paused campaign (a send already in flight completes)."""
    _move(campaign, "pause", [CampaignStatus.RUNNING], CampaignStatus.PAUSED)
    return campaign


def campaign_resume(*, campaign: Campaign) -> Campaign:
    _move(campaign, "resume", [CampaignStatus.PAUSED], CampaignStatus.RUNNING)
    queue.sender_kick()
    return campaign


def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Any unfinished state -> cancelled: what was not sent is skipped (reason `cancelled`)."""
    now = timezone.now()
    with transaction.atomic():
        _move(campaign, "cancel", CANCELLABLE, CampaignStatus.CANCELLED, finished_at=now, next_run_at=None)
        Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SKIPPED, reason="cancelled", lease_until=None
        )
        CampaignRun.objects.filter(campaign=campaign, finished_at__isnull=True).update(
            status=RunStatus.CANCELLED, finished_at=now
        )
        queue.fire_schedule_clear(campaign.pk)
    campaign.refresh_from_db()
    return campaign


def running_send_windows() -> dict[Any, SendWindow]:
    """The send windows of the running campaigns that have one (campaign id -> window)."""
    rows = Campaign.objects.filter(
        status=CampaignStatus.RUNNING, send_window_start__isnull=False, send_window_end__isnull=False
    ).values_list("pk", "send_window_start", "send_window_end", "send_window_days")
    return {
        pk: SendWindow(start, end, tuple(days or ()))
        for pk, start, end, days in rows
        if start is not None and end is not None
    }


# --- the sweeps (the minute task and every sender pass) ------------------------------------------------------------


def campaigns_fire_due(now: datetime) -> int:
    """Fire what is due, each campaign on its own: one that cannot fire becomes `failed`, the others go on."""
    due = Campaign.objects.filter(status=CampaignStatus.SCHEDULED, next_run_at__lte=now).values_list("pk", flat=True)
    return sum(campaign_fire_or_fail(campaign_id=pk, now=now) for pk in list(due[:100]))


def runs_expire(now: datetime) -> int:
    """`endAt` passed: what is left of the run is skipped (reason `expired`)."""
    return Delivery.objects.filter(
        status=DeliveryStatus.PENDING, run__status=RunStatus.RUNNING, run__ends_at__lte=now
    ).update(status=DeliveryStatus.SKIPPED, reason="expired")


def inactive_accounts_skip() -> int:
    """Deliveries from an account that cannot send (disconnected, revoked) are skipped, checked at send time."""
    return (
        Delivery.objects.filter(ACTIVE_RUN, status=DeliveryStatus.PENDING)
        .exclude(account__status=AccountStatus.ACTIVE)
        .update(status=DeliveryStatus.SKIPPED, reason="account_inactive")
    )


def runs_complete(now: datetime) -> int:
    """Runs with nothing left to send are completed; their campaign goes on to its next occurrence (scheduled)
    or is completed."""
    unfinished = Delivery.objects.filter(  # by (campaign, status): a probe, not a walk over the run's deliveries
        campaign=OuterRef("campaign"), run=OuterRef("pk"), status__in=UNFINISHED
    )
    done = CampaignRun.objects.filter(
        status=RunStatus.RUNNING, campaign__status=CampaignStatus.RUNNING, audience_frozen_at__isnull=False
    ).filter(~Exists(unfinished))
    finished = 0
    for run in done.select_related("campaign"):
        if not CampaignRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.COMPLETED, finished_at=now
        ):
            continue
        finished += 1
        campaign = run.campaign
        if campaign.next_run_at is not None:
            moved = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.RUNNING).update(
                status=CampaignStatus.SCHEDULED, updated_at=now
            )
            if moved:
                queue.fire_schedule_set(campaign.pk, campaign.next_run_at)
        else:
            Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.RUNNING).update(
                status=CampaignStatus.COMPLETED, finished_at=now, updated_at=now
            )
    return finished


def campaigns_sweep(now: datetime | None = None) -> str:
    """Every minute: fire what is due (a missed one-off schedule), queue again a freeze lost with its worker, and
    wake the sender when anything waits (deliveries deferred by a cap resume by themselves this way)."""
    now = now or timezone.now()
    fired = campaigns_fire_due(now)
    lost = CampaignRun.objects.filter(
        status=RunStatus.RUNNING, audience_frozen_at__isnull=True, started_at__lt=now - timedelta(minutes=5)
    ).values_list("pk", flat=True)
    for run_id in lost[:10]:
        queue.run_freeze_enqueue(run_id)
    waiting = Delivery.objects.filter(status__in=UNFINISHED, campaign__status=CampaignStatus.RUNNING).exists()
    if waiting or fired:
        queue.sender_kick()
    return f"fired {fired}; sender {'woken' if waiting or fired else 'idle'}"
