"""Campaign metrics, read from the deliveries (test sends have none, so they are left out by construction).

`totalSent` counts deliveries X was asked to send (sent + failed); `delivered` those X accepted; `opened`, `clicked`
and `replied` those with a read receipt, a first click, or a reply within the attribution window; rates are over
`delivered` and `deliveryRate` over `totalSent`, rounded as in the reference (two decimals)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from campaigns.campaigns import schedule_of
from campaigns.lifecycle import running_send_windows
from campaigns.models import AccountPacing, Campaign, CampaignRun, CampaignStatus, Delivery, DeliveryStatus, RunStatus
from campaigns.pacing import XWindow, steady_interval
from campaigns.send_window import SendWindow, window_closing, window_opening, window_timezone
from contacts.models import MessageOrigin
from contacts.serializers import iso
from contacts.services.quota import QuotaState, quota_state
from mktx.accounts.models import Account

DAY = timedelta(hours=24)
ATTEMPTED = [DeliveryStatus.SENT, DeliveryStatus.FAILED]
COUNTS = {
    "total_sent": Q(status__in=ATTEMPTED),
    "delivered": Q(status=DeliveryStatus.SENT),
    "opened": Q(status=DeliveryStatus.SENT, opened_at__isnull=False),
    "clicked": Q(status=DeliveryStatus.SENT, clicked_at__isnull=False),
    "replied": Q(status=DeliveryStatus.SENT, replied_at__isnull=False),
    "failed": Q(status=DeliveryStatus.FAILED),
    "skipped": Q(status=DeliveryStatus.SKIPPED),
    "pending": Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
}
# timeline series -> (the time it is bucketed by, which deliveries count)
SERIES = {
    "sent": ("attempted_at", COUNTS["total_sent"]),
    "delivered": ("sent_at", COUNTS["delivered"]),
    "opened": ("opened_at", COUNTS["opened"]),
    "clicked": ("clicked_at", COUNTS["clicked"]),
    "replied": ("replied_at", COUNTS["replied"]),
    "failed": ("attempted_at", COUNTS["failed"]),
}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 2) if whole else 0.0


def counts_of(deliveries: QuerySet[Delivery]) -> dict[str, int]:
    row = deliveries.aggregate(audience=Count("pk"), **{name: Count("pk", filter=q) for name, q in COUNTS.items()})
    return {name: int(value or 0) for name, value in row.items()}


def with_rates(counts: dict[str, int]) -> dict[str, Any]:
    delivered = counts["delivered"]
    return {
        **counts,
        "open_rate": _rate(counts["opened"], delivered),
        "click_rate": _rate(counts["clicked"], delivered),
        "reply_rate": _rate(counts["replied"], delivered),
        "delivery_rate": _rate(delivered, counts["total_sent"]),
    }


def timeline(deliveries: QuerySet[Delivery]) -> list[dict[str, Any]]:
    """Hourly buckets (UTC) with every series."""
    buckets: dict[datetime, dict[str, Any]] = {}
    for name, (field, condition) in SERIES.items():
        rows = (
            deliveries.filter(condition, **{f"{field}__isnull": False})
            .annotate(hour=TruncHour(field, tzinfo=UTC))
            .values("hour")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in rows:
            bucket = buckets.setdefault(row["hour"], dict.fromkeys(SERIES, 0))
            bucket[name] = row["n"]
    return [{"timestamp": iso(hour), **buckets[hour]} for hour in sorted(buckets)]


def campaign_metrics(campaign: Campaign, *, run_number: int | None = None) -> dict[str, Any]:
    """The metrics of a campaign (every run rolled up) with its timeline and, per run, its own counts."""
    deliveries = Delivery.objects.filter(campaign=campaign)
    if run_number is not None:
        deliveries = deliveries.filter(run__number=run_number)
    result = with_rates(counts_of(deliveries))
    result["timeline"] = timeline(deliveries)
    per_run = {
        row["run__number"]: row
        for row in Delivery.objects.filter(campaign=campaign)
        .values("run__number")
        .annotate(**{name: Count("pk", filter=q) for name, q in COUNTS.items()})
        .order_by()
    }
    result["runs"] = [
        {
            "run": run.number,
            "status": run.status,
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "audience": run.audience_size,
            **with_rates({name: int(per_run.get(run.number, {}).get(name, 0)) for name in COUNTS}),
        }
        for run in CampaignRun.objects.filter(campaign=campaign).order_by("number")
        if run_number is None or run.number == run_number
    ]
    return result


def summary_metrics(campaign_ids: list[Any]) -> dict[Any, dict[str, int]]:
    """The six headline counts of many campaigns in one query (lists)."""
    names = ("total_sent", "delivered", "opened", "clicked", "replied", "failed")
    rows = (
        Delivery.objects.filter(campaign_id__in=campaign_ids)
        .values("campaign_id")
        .annotate(**{name: Count("pk", filter=COUNTS[name]) for name in names})
        .order_by()
    )
    found = {row["campaign_id"]: {name: int(row[name]) for name in names} for row in rows}
    return {pk: found.get(pk, dict.fromkeys(names, 0)) for pk in campaign_ids}


def estimated_completion(campaign: Campaign, now: datetime | None = None) -> datetime | None:
    """When the current run should be done at the accounts' pace (pacing.py): per account, the deliveries queued
    ahead of this campaign's last one (other campaigns' included, unless their send window keeps them back now), at
    X's spacing from the account's next slot, inside the campaign's send window, and what does not fit the rolling
    24 h caps one window later per day's allowance. None when a cap of 0 forbids it."""
    if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        return None
    now = now or timezone.now()
    waiting = Delivery.objects.filter(
        campaign=campaign, run__status=RunStatus.RUNNING, status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    )
    last_per_account = {row["account_id"]: row["last"] for row in waiting.values("account_id").annotate(last=Max("pk"))}
    slots = {p.pk: p for p in AccountPacing.objects.filter(pk__in=list(last_per_account))}
    zones = dict(Account.objects.filter(pk__in=list(last_per_account)).values_list("pk", "business_hours"))
    windows = running_send_windows()
    own = schedule_of(campaign).send_window
    finish = now
    for account_id, last in last_per_account.items():
        zone = window_timezone(zones.get(account_id))
        held = [pk for pk, w in windows.items() if pk != campaign.pk and window_opening(w, zone, now) > now]
        ahead = (
            Delivery.objects.filter(
                account_id=account_id, pk__lte=last, status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
            )
            .filter(Q(campaign__status=CampaignStatus.RUNNING) | Q(campaign=campaign))  # a paused one: its own
            .exclude(campaign_id__in=held)
            .count()
            or 1
        )
        slot = slots.get(account_id)
        start = max(now, slot.next_send_at) if slot is not None and slot.next_send_at else now
        busy = _busy_time(ahead, slot, quota_state(account_id, now))
        if busy is None:
            return None
        finish = max(finish, _inside_window(own, zone, start, busy) if own is not None else start + busy)
    run = CampaignRun.objects.filter(campaign=campaign, status=RunStatus.RUNNING).order_by("-number").first()
    if run is not None and run.ends_at is not None:
        finish = min(finish, run.ends_at)
    return finish


def _app_window() -> XWindow | None:
    """X's DM window as it was last reported for any account: the app's tier sets the limit, so an account X has not
    answered yet will most likely get the same (the pace itself waits for its own headers)."""
    row = (
        AccountPacing.objects.filter(x_limit__isnull=False, x_remaining__isnull=False, x_reset_at__isnull=False)
        .order_by("-updated_at")
        .first()
    )
    return XWindow.stored(row)


def _busy_time(ahead: int, slot: AccountPacing | None, quota: QuotaState) -> timedelta | None:
    """How long an account takes to send `ahead` DMs from its next slot: X's spacing, and a day's allowance per
    window of the rolling 24 h caps for what does not fit now."""
    spacing = steady_interval(XWindow.stored(slot) or _app_window())
    room = quota.room(MessageOrigin.CAMPAIGN)
    if ahead <= room:
        return spacing * (ahead - 1)
    per_day = min(quota.marketing_limit, quota.campaign_limit)
    if per_day <= 0:
        return None
    rest = ahead - room  # what waits for the window: a day's allowance per window
    reopens = quota.next_free_at(MessageOrigin.CAMPAIGN) if room == 0 else None
    first = (reopens - quota.at) if reopens is not None else DAY
    return first + DAY * ((rest - 1) // per_day) + spacing * ((rest - 1) % per_day)


def _inside_window(window: SendWindow, zone: ZoneInfo, start: datetime, busy: timedelta) -> datetime:
    """`busy` of sending counted only while the send window is open, from `start`."""
    at = window_opening(window, zone, start)
    for _ in range(800):  # two years of daily openings at most
        closing = window_closing(window, zone, at)
        if closing is None or busy <= closing - at:
            return at + busy
        busy -= closing - at
        at = window_opening(window, zone, closing)
    return at + busy
