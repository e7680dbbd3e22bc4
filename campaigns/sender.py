"""The campaign sender: paced per X account, exactly once per delivery.

Pacing (`pacing.py`). Each account's campaign DMs are spaced by the tightest of its limits, one in flight at a
time; deliveries that do not fit wait (still `pending`, the campaign still `running`) and go when the slot opens.

Exactly once. A delivery is claimed by a conditional UPDATE (`pending` -> `sending`) with a lease, sent through the
inbox's outbound path with an idempotency key per attempt, and recorded with X's DM event id. A worker that dies
after claiming leaves the lease to expire; the sweep then looks at the conversation's DM events at X before
anything is resent: found, the delivery is recorded as sent; not found, it goes back to `pending`. A retry after a
timeout or a 5xx looks at X the same way first, because X may have sent a DM it answered an error for.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.links import links_track
from campaigns.media import RunMedia
from campaigns.models import (
    AccountPacing,
    Campaign,
    CampaignRun,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    RunStatus,
    SenderLane,
)
from campaigns.pacing import Slot, account_pace, slot_push, slot_release, slot_reserve
from campaigns.templating import render
from contacts.models import Contact, Conversation, Message, MessageOrigin, MessageStatus
from contacts.services.conversations import conversation_open_for
from contacts.services.outbound import Attachment, SendSkipped, message_mark_sent, message_send
from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import account_client
from mktx.api.errors import ApiError, RateLimited
from mktx.xapi import XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.errors import XBadRequest

logger = logging.getLogger("mktx.campaigns.sender")

MAX_TRIES = 3
RETRY_BACKOFF = (timedelta(seconds=30), timedelta(minutes=2))
RECONCILE_BATCH = 100
UNCLEAR = ("Timeout", "ServerError", "Unavailable", "Lost")  # error codes after which X may have sent the DM
ACTIVE_RUN = Q(campaign__status=CampaignStatus.RUNNING, run__status=RunStatus.RUNNING)


def _key(delivery_id: int, attempt: int) -> str:
    return f"campaign-delivery:{delivery_id}:{attempt}"


# --- claiming and sending -------------------------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return Delivery.objects.filter(ACTIVE_RUN, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


def _claim(account_id: Any, now: datetime) -> Delivery | None:
    lease = now + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS)
    for _ in range(3):
        candidate = (
            _due(now).filter(account_id=account_id).order_by("next_attempt_at", "id").values_list("pk", flat=True)[:1]
        )
        pk = next(iter(candidate), None)
        if pk is None:
            return None
        claimed = Delivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENDING, lease_until=lease, claimed_at=now, attempts=F("attempts") + 1
        )
        if claimed:
            return Delivery.objects.select_related("campaign__template", "contact", "account", "run").get(pk=pk)
    return None


def _finish(delivery: Delivery, status: str, reason: str = "", detail: str = "", **fields: Any) -> bool:
    """Record the outcome of a claimed delivery (only while it is still `sending`)."""
    return bool(
        Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(
            status=status, reason=reason, error_detail=detail[:500], lease_until=None, **fields
        )
    )


def _record_sent(delivery: Delivery, message: Message, at: datetime) -> bool:
    return _finish(
        delivery,
        DeliveryStatus.SENT,
        message=message,
        dm_event_id=message.twitter_message_id or "",
        sent_at=message.sent_at or at,
        attempted_at=at,
    )


def _retry_later(delivery: Delivery, at: datetime, *, failed: bool = False) -> None:
    """Back to `pending` until `at`; `failed` counts an X 5xx or timeout towards the three tries."""
    Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING,
        lease_until=None,
        next_attempt_at=at,
        failures=F("failures") + (1 if failed else 0),
    )


def campaign_conversation(contact: Contact) -> Conversation:
    """Where a campaign DM is recorded: the contact's latest conversation (a closed one stays closed: a reply
    opens one, as any inbound DM does), or a new one for a contact never talked to."""
    latest = Conversation.objects.filter(contact=contact).order_by("-last_message_at").first()
    return latest or conversation_open_for(contact=contact, at=timezone.now())


def _sent_at_x(account: Account, participant_id: str, text: str, since: datetime) -> str | None:
    """X's id of a DM the account sent the participant with this text since `since`, if X has one."""
    for event in account_client(account).dm_events(participant_id):
        if str(event.get("sender_id")) != account.twitter_user_id or event.get("text") != text:
            continue
        created = parse_datetime(str(event.get("created_at", "")))
        if created is None or created >= since - timedelta(seconds=5):
            return str(event["id"])
    return None


def _earlier_attempt_landed(delivery: Delivery, now: datetime) -> bool:
    """Before a retry: did an earlier attempt whose outcome was unclear (a timeout, a 5xx, a worker that stopped)
    reach X after all? Then it is recorded instead of sending again."""
    earlier = Message.objects.filter(
        account_id=delivery.account_id,
        idempotency_key__in=[_key(delivery.pk, n) for n in range(1, delivery.attempts)],
    ).filter(
        Q(status__in=[MessageStatus.SENT, MessageStatus.PENDING])
        | Q(status=MessageStatus.FAILED, error_code__in=UNCLEAR)
    )
    assert delivery.contact is not None
    for message in earlier.order_by("-created_at"):
        if message.status != MessageStatus.SENT:
            found = _sent_at_x(delivery.account, delivery.contact.twitter_user_id, message.content, message.created_at)
            if found is None:
                continue
            Message.objects.filter(pk=message.pk).update(status=MessageStatus.PENDING)
            message_mark_sent(message=message, dm_event_id=found, at=now)
        return _record_sent(delivery, message, now)
    return False


def delivery_send(delivery: Delivery, now: datetime) -> str:
    """Send one claimed delivery; the status it ends in."""
    campaign, contact = delivery.campaign, delivery.contact
    if contact is None:
        _finish(delivery, DeliveryStatus.SKIPPED, "contact_erased", attempted_at=now)
        return DeliveryStatus.SKIPPED
    if delivery.attempts > 1:
        try:
            if _earlier_attempt_landed(delivery, now):
                return DeliveryStatus.SENT
        except XError as exc:  # cannot tell yet whether it landed: never resend blind
            _retry_later(delivery, now + RETRY_BACKOFF[0])
            logger.warning("delivery %s: X's DM events unavailable (%s); later", delivery.pk, exc.message)
            return DeliveryStatus.PENDING
    if campaign.template is None:
        _finish(delivery, DeliveryStatus.FAILED, "template_deleted", attempted_at=now)
        return DeliveryStatus.FAILED
    try:
        rendered = render(campaign.template, variables=campaign.variables, contact=contact)
    except ApiError as exc:
        _finish(delivery, DeliveryStatus.SKIPPED, "missing_value", exc.message, attempted_at=now)
        return DeliveryStatus.SKIPPED
    text = links_track(rendered.text, delivery)
    try:
        message = message_send(
            conversation=campaign_conversation(contact),
            content=text,
            origin=MessageOrigin.CAMPAIGN,
            message_type=campaign.template.type,
            attachments=[Attachment(rendered.image_url, uploads=RunMedia(delivery.run))] if rendered.image_url else [],
            marketing=True,
            idempotency_key=_key(delivery.pk, delivery.attempts),
            metadata={"campaignId": str(campaign.pk), "deliveryId": delivery.pk, "run": delivery.run.number},
        )
    except SendSkipped as exc:
        _finish(delivery, DeliveryStatus.SKIPPED, exc.reason, exc.message, attempted_at=now)
        return DeliveryStatus.SKIPPED
    except RateLimited as exc:  # the shared quota filled between pacing and sending (a staff reply): wait
        reset = parse_datetime(str(exc.details.get("resetAt", ""))) or now + timedelta(hours=24)
        slot_push(delivery.account_id, reset)
        _retry_later(delivery, reset)
        return DeliveryStatus.PENDING
    except ApiError as exc:
        return _failed_send(delivery, exc, now)
    if message.status != MessageStatus.SENT:  # the key answered an earlier message: look at X on the next try
        _retry_later(delivery, now)
        return DeliveryStatus.PENDING
    _record_sent(delivery, message, now)
    return DeliveryStatus.SENT


def _failed_send(delivery: Delivery, exc: ApiError, now: datetime) -> str:
    cause = exc.__cause__
    if isinstance(cause, XRateLimited):
        reset = cause.reset_at or now + timedelta(minutes=15)
        slot_push(delivery.account_id, reset + timedelta(seconds=1))
        _retry_later(delivery, reset)
        return DeliveryStatus.PENDING
    if isinstance(cause, XInvalidToken):
        _finish(delivery, DeliveryStatus.SKIPPED, "account_inactive", cause.message, attempted_at=now)
        return DeliveryStatus.SKIPPED
    if isinstance(cause, XForbidden):  # final: never retried blindly (x-platform-notes.md)
        _finish(delivery, DeliveryStatus.FAILED, "x_forbidden", cause.message, attempted_at=now)
        return DeliveryStatus.FAILED
    if isinstance(cause, XBadRequest) or not isinstance(cause, XError):
        _finish(delivery, DeliveryStatus.FAILED, "rejected", exc.message, attempted_at=now)
        return DeliveryStatus.FAILED
    if delivery.failures + 1 >= MAX_TRIES:  # 5xx, timeouts, X unreachable: three tries
        _finish(delivery, DeliveryStatus.FAILED, "x_error", cause.message, attempted_at=now, failures=MAX_TRIES)
        return DeliveryStatus.FAILED
    _retry_later(delivery, now + RETRY_BACKOFF[min(delivery.failures, len(RETRY_BACKOFF) - 1)], failed=True)
    return DeliveryStatus.PENDING


# --- the sweep ------------------------------------------------------------------------------------------------------


def leases_reconcile(now: datetime) -> int:
    """Deliveries whose worker died mid-send: look at X before anything is resent."""
    done = 0
    expired = Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_until__lt=now).select_related(
        "account", "contact"
    )
    for delivery in expired[:RECONCILE_BATCH]:
        message = Message.objects.filter(
            account_id=delivery.account_id, idempotency_key=_key(delivery.pk, delivery.attempts)
        ).first()
        if message is not None and message.status == MessageStatus.SENT:
            _record_sent(delivery, message, now)
        elif message is None or delivery.contact is None:  # it never reached X (the message precedes the call)
            _retry_later(delivery, now)
        else:
            try:
                found = _sent_at_x(
                    delivery.account, delivery.contact.twitter_user_id, message.content, message.created_at
                )
            except XError as exc:
                Delivery.objects.filter(pk=delivery.pk).update(lease_until=now + timedelta(minutes=1))
                logger.warning("delivery %s: cannot reconcile yet: %s", delivery.pk, exc.message)
                continue
            if found:
                message_mark_sent(message=message, dm_event_id=found, at=now)
                message.refresh_from_db()
                _record_sent(delivery, message, now)
            else:
                Message.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(
                    status=MessageStatus.FAILED, error_code="Lost", error_detail="the worker stopped before X answered"
                )
                _retry_later(delivery, now)
        done += 1
    if done:
        logger.info("reconciled %s deliveries whose lease expired", done)
    return done


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
    from campaigns.lifecycle import campaign_fire_schedule

    unfinished = Delivery.objects.filter(  # by (campaign, status): a probe, not a walk over the run's deliveries
        campaign=OuterRef("campaign"), run=OuterRef("pk"), status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
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
                campaign_fire_schedule(campaign)
        else:
            Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.RUNNING).update(
                status=CampaignStatus.COMPLETED, finished_at=now, updated_at=now
            )
    return finished


def campaigns_fire_due(now: datetime) -> int:
    """Fire what is due, each campaign on its own: one that cannot fire becomes `failed`, the others go on."""
    from campaigns.lifecycle import campaign_fire_or_fail

    due = Campaign.objects.filter(status=CampaignStatus.SCHEDULED, next_run_at__lte=now).values_list("pk", flat=True)
    return sum(campaign_fire_or_fail(campaign_id=pk, now=now) for pk in list(due[:100]))


# --- the loop -------------------------------------------------------------------------------------------------------


def sender_step(now: datetime | None = None) -> datetime | None:
    """One pass: fire due occurrences, expire, reconcile, then send one delivery from each account whose slot is
    open. Answers when something is next due (None: nothing is waiting)."""
    now = now or timezone.now()
    campaigns_fire_due(now)
    runs_expire(now)
    leases_reconcile(now)
    inactive_accounts_skip()
    wake: datetime | None = None
    # a probe per connected account (few) rather than a DISTINCT over every waiting delivery (up to millions)
    has_due = Exists(_due(now).filter(account_id=OuterRef("pk")))
    accounts = list(Account.objects.filter(has_due).values_list("pk", flat=True))
    slots: dict[Any, Slot] = {
        row[0]: (row[1], row[2])
        for row in AccountPacing.objects.filter(pk__in=accounts).values_list("pk", "next_send_at", "last_send_at")
    }
    for account_id in accounts:
        taken_until = slots.get(account_id, (None, None))[0]
        if taken_until is not None and taken_until > now:  # not this account's turn: no need to look further
            wake = min(wake or taken_until, taken_until)
            continue
        pace = account_pace(account_id, now, slots.get(account_id))
        if pace.next_at > now:
            wake = min(wake or pace.next_at, pace.next_at)
            continue
        hold = slot_reserve(account_id, now)
        if hold is None:
            continue
        try:
            delivery = _claim(account_id, now)
            if delivery is not None:
                delivery_send(delivery, now)
        finally:
            slot_release(account_id, now, hold)
        following = AccountPacing.objects.filter(pk=account_id).values_list("next_send_at", flat=True).first()
        if following is not None:
            wake = min(wake or following, following)
    runs_complete(now)
    later = (  # retries and deferrals (a paused campaign's too: waking for them once is harmless)
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if later is not None:
        wake = min(wake or later, later)
    leased = (
        Delivery.objects.filter(status=DeliveryStatus.SENDING)
        .order_by("lease_until")
        .values_list("lease_until", flat=True)
        .first()
    )
    if leased is not None:
        wake = min(wake or leased, leased)
    return wake


def _lane_acquire(holder: str, until: datetime) -> int | None:
    now = timezone.now()
    for lane in range(1, settings.MKTX_SENDER_LANES + 1):
        SenderLane.objects.get_or_create(pk=lane)
        if SenderLane.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=lane).update(
            lease_until=until, holder=holder
        ):
            return lane
    return None


def sender_run(budget: float | None = None) -> str:
    """A sender loop: steps until nothing is due within its budget (seconds), sleeping until the next slot.
    At most MKTX_SENDER_LANES loops run at once. Answers a summary for the task log."""
    budget = settings.MKTX_SENDER_BUDGET_SECONDS if budget is None else budget
    holder = uuid.uuid4().hex
    lane = _lane_acquire(holder, timezone.now() + timedelta(seconds=budget + 60))
    if lane is None:
        return "all sender lanes busy"
    deadline = time.monotonic() + budget
    steps, wake = 0, None
    try:
        while True:
            wake = sender_step()
            steps += 1
            if budget <= 0 or wake is None:
                break
            delay = (wake - timezone.now()).total_seconds()
            if time.monotonic() + max(0.0, delay) > deadline:
                break
            if delay > 0:
                time.sleep(min(delay, 1.0))  # wake at least every second: pauses and new work are seen quickly
    finally:
        SenderLane.objects.filter(pk=lane, holder=holder).update(lease_until=None, holder="")
    if budget > 0 and wake is not None and (wake - timezone.now()).total_seconds() < budget:
        from campaigns.tasks import kick_sender

        kick_sender()
    return f"lane {lane}: {steps} steps, next at {wake.isoformat() if wake else 'nothing due'}"
