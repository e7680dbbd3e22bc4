"""Pacing of campaign DMs per X account: the spacing under every limit at once (the rolling 24 h DM quota shared
with every other sender, MKTX_CAMPAIGN_DAILY_LIMIT, X's x-rate-limit-* answers), and the account's slot
(`AccountPacing`), taken by compare-and-set so that any number of sender loops keep one account's sends evenly
spaced, one in flight at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q

from campaigns.models import AccountPacing
from contacts.models import Message, MessageDirection, MessageOrigin, MessageStatus
from contacts.services.outbound import quota_state
from mktx.xapi.client import last_rate_limit

DAY = timedelta(hours=24)
X_DM_WINDOW = 15 * 60  # X's DM limit window (x-platform-notes.md): x-rate-limit-limit sends per 15 minutes
SAFETY = 1.005  # a hair slower than the limit, so clock jitter never makes a 16th DM in X's window


@dataclass(frozen=True)
class Pace:
    next_at: datetime  # the earliest the account may send its next campaign DM
    interval: float  # seconds between two campaign DMs of the account at the current limits
    limit: str  # which limit sets it


def _interval(account_id: Any) -> tuple[float, str, Any]:
    """The spacing of the account's campaign DMs at the current limits (seconds), the limit that sets it, and what
    X last said about its DM limit."""
    candidates = {"x_dm_daily_limit": _spacing(settings.MKTX_X_DM_DAILY_LIMIT, DAY.total_seconds())}
    candidates["campaign_daily_limit"] = _spacing(settings.MKTX_CAMPAIGN_DAILY_LIMIT, DAY.total_seconds())
    x_limit = last_rate_limit(str(account_id), "dm_send")
    if x_limit is not None and x_limit.limit > 0:
        candidates["x_rate_limit"] = X_DM_WINDOW / x_limit.limit
    limit = max(candidates, key=lambda name: candidates[name])
    return candidates[limit] * SAFETY, limit, x_limit


Slot = tuple[datetime | None, datetime | None]  # (next_send_at, last_send_at)


def account_pace(account_id: Any, now: datetime, slot: Slot | None = None) -> Pace:
    """When the account may send its next campaign DM, and at what spacing, under every limit at once."""
    interval, limit, x_limit = _interval(account_id)
    waits: dict[str, datetime] = {}
    if slot is None:
        slot = AccountPacing.objects.filter(pk=account_id).values_list("next_send_at", "last_send_at").first()
    if slot is not None and slot[0] is not None:
        waits[limit] = slot[0]
    if slot is not None and slot[1] is not None and math.isfinite(interval):  # limits learnt since the last send
        waits[limit] = max(waits.get(limit, slot[1]), slot[1] + timedelta(seconds=interval))
    used, reset_at = quota_state(account_id, now)
    if used >= settings.MKTX_X_DM_DAILY_LIMIT:
        waits["x_dm_daily_limit"] = reset_at or now + DAY
    campaign_used, campaign_reset = _campaign_quota(account_id, now)
    if campaign_used >= settings.MKTX_CAMPAIGN_DAILY_LIMIT:
        waits["campaign_daily_limit"] = campaign_reset or now + DAY
    if x_limit is not None and x_limit.remaining <= 0:
        waits["x_rate_limit"] = datetime.fromtimestamp(x_limit.reset + 1, tz=UTC)
    if not waits:
        return Pace(now, interval, limit)
    reason = max(waits, key=lambda name: waits[name])
    return Pace(max(now, waits[reason]), interval, reason if waits[reason] > now else limit)


def _spacing(per_day: int, window: float) -> float:
    return math.inf if per_day <= 0 else window / per_day


def _campaign_quota(account_id: Any, now: datetime) -> tuple[int, datetime | None]:
    stats = Message.objects.filter(
        account_id=account_id,
        direction=MessageDirection.OUTBOUND,
        origin=MessageOrigin.CAMPAIGN,
        status__in=[MessageStatus.PENDING, MessageStatus.SENT],
        created_at__gte=now - DAY,
    ).aggregate(count=Count("pk"), oldest=Min("created_at"))
    return int(stats["count"]), (stats["oldest"] + DAY if stats["oldest"] else None)


def slot_reserve(account_id: Any, now: datetime) -> datetime | None:
    """Take the account's slot: a compare-and-set, so two sender loops never both send for one slot. The slot
    stays taken while the send is in flight (one send per account at a time; a dead worker's hold ends with its
    lease); `slot_release` then sets the next slot from what X answered. Answers the hold, None when taken."""
    hold = now + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS)
    for _ in range(2):
        taken = AccountPacing.objects.filter(
            Q(next_send_at__isnull=True) | Q(next_send_at__lte=now), pk=account_id
        ).update(next_send_at=hold, last_send_at=now)
        if taken:
            return hold
        _, created = AccountPacing.objects.get_or_create(account_id=account_id)  # the account's first send
        if not created:
            return None
    return None


def slot_release(account_id: Any, reserved_at: datetime, hold: datetime) -> None:
    """After the send: the next slot is one interval (at the limits now known, X's answer included) after this
    send, unless something pushed it later meanwhile (a 429's reset, the quota)."""
    interval = _interval(account_id)[0]
    following = reserved_at + timedelta(seconds=interval) if math.isfinite(interval) else reserved_at + DAY
    AccountPacing.objects.filter(pk=account_id, last_send_at=reserved_at, next_send_at=hold).update(
        next_send_at=following
    )


def slot_push(account_id: Any, until: datetime) -> None:
    """Nothing may be sent from the account before `until` (X's reset, the quota's window)."""
    AccountPacing.objects.get_or_create(account_id=account_id)
    AccountPacing.objects.filter(Q(next_send_at__isnull=True) | Q(next_send_at__lt=until), pk=account_id).update(
        next_send_at=until
    )
