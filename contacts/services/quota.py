"""The rolling-24 h DM quota of an X account, kept as a counter row (`AccountQuota`) instead of aggregating the last
24 h of messages on every send.

The row holds the account's outbound DMs per 10-minute bucket, in three columns: all DMs X counts (pending or sent,
every origin, X-app echoes included), marketing DMs (campaign and flow) and campaign DMs. The outbound path locks
it (`SELECT ... FOR UPDATE`), checks the caps and counts the new Message in one transaction with the Message
insert, so two processes never both pass a cap. A bucket counts until 24 h after its END: a message may be held
up to one bucket (10 minutes) longer than its exact 24 h, never shorter.

The caps (`QuotaCap`), each checked before a Message is stored:
- `daily_quota`: all DMs < MKTX_X_DM_DAILY_LIMIT, for every sender;
- `reply_reserve`: for marketing origins, all DMs < the daily limit minus the reply reserve (MKTX_REPLY_RESERVE of
  the daily limit, rounded up): the last DMs of the day are kept for staff, bot and system replies;
- `campaign_daily_limit`: campaign DMs < MKTX_CAMPAIGN_DAILY_LIMIT, for campaign DMs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils import timezone

from contacts.models import AccountQuota, Message, MessageOrigin
from mktx.api.errors import RateLimited
from mktx.bulk import values_update

BUCKET_SECONDS = 600
WINDOW = timedelta(hours=24)
MARKETING_ORIGINS = frozenset({MessageOrigin.CAMPAIGN, MessageOrigin.FLOW})
ALL, MARKETING, CAMPAIGN = 0, 1, 2  # the columns of a bucket

Buckets = dict[int, list[int]]  # bucket number -> [all, marketing, campaign]


class QuotaCap(StrEnum):
    DAILY = "daily_quota"
    RESERVE = "reply_reserve"
    CAMPAIGN = "campaign_daily_limit"


def bucket_of(at: datetime) -> int:
    return int(at.timestamp()) // BUCKET_SECONDS


def bucket_expiry(bucket: int) -> datetime:
    """When a bucket leaves the window: 24 h after its end (conservative by at most one bucket)."""
    return datetime.fromtimestamp((bucket + 1) * BUCKET_SECONDS, tz=UTC) + WINDOW


def reply_reserve() -> int:
    """DMs of the daily limit that marketing senders leave to replies (rounded up: 10% of 500 is 50, of 5 is 1)."""
    return math.ceil(round(settings.MKTX_REPLY_RESERVE * settings.MKTX_X_DM_DAILY_LIMIT, 6))


def _columns(origin: str) -> tuple[int, ...]:
    if origin == MessageOrigin.CAMPAIGN:
        return ALL, MARKETING, CAMPAIGN
    return (ALL, MARKETING) if origin in MARKETING_ORIGINS else (ALL,)


def _caps(origin: str) -> tuple[QuotaCap, ...]:
    if origin == MessageOrigin.CAMPAIGN:
        return QuotaCap.DAILY, QuotaCap.RESERVE, QuotaCap.CAMPAIGN
    return (QuotaCap.DAILY, QuotaCap.RESERVE) if origin in MARKETING_ORIGINS else (QuotaCap.DAILY,)


def _live(raw: Any, now: datetime) -> Buckets:
    """The stored buckets still inside the window at `now`, with a count."""
    live: Buckets = {}
    for key, counts in (raw or {}).items():
        bucket = int(key)
        values = ([max(0, int(n)) for n in counts] + [0, 0, 0])[:3]
        if bucket_expiry(bucket) > now and any(values):
            live[bucket] = values
    return live


@dataclass(frozen=True)
class QuotaState:
    """The account's quota at `at`: DMs counted in the window (`used`: every origin; `marketing`: campaign and
    flow; `campaign`), the limits in force, and per cap when one more DM of that kind fits again (`reset_at`).
    `buckets` is (bucket, all, marketing, campaign), oldest first."""

    at: datetime
    used: int
    marketing: int
    campaign: int
    daily_limit: int
    marketing_limit: int  # the daily limit minus the reply reserve
    campaign_limit: int
    buckets: tuple[tuple[int, int, int, int], ...] = ()

    @classmethod
    def of(cls, live: Buckets, now: datetime) -> QuotaState:
        rows = tuple((b, live[b][ALL], live[b][MARKETING], live[b][CAMPAIGN]) for b in sorted(live))
        daily = settings.MKTX_X_DM_DAILY_LIMIT
        return cls(
            at=now,
            used=sum(r[1] for r in rows),
            marketing=sum(r[2] for r in rows),
            campaign=sum(r[3] for r in rows),
            daily_limit=daily,
            marketing_limit=max(0, daily - reply_reserve()),
            campaign_limit=settings.MKTX_CAMPAIGN_DAILY_LIMIT,
            buckets=rows,
        )

    @classmethod
    def of_row(cls, raw: Any, now: datetime | None = None) -> QuotaState:
        """The state of a stored `AccountQuota.buckets` value at `now`."""
        now = now or timezone.now()
        return cls.of(_live(raw, now), now)

    def limit(self, cap: QuotaCap) -> int:
        return {QuotaCap.DAILY: self.daily_limit, QuotaCap.RESERVE: self.marketing_limit}.get(cap, self.campaign_limit)

    def count(self, cap: QuotaCap) -> int:
        return self.campaign if cap == QuotaCap.CAMPAIGN else self.used

    def reset_at(self, cap: QuotaCap) -> datetime | None:
        """When one more DM fits under `cap`: `at` when it fits now, else when enough buckets have left the window;
        None when the limit is 0 (never)."""
        limit = self.limit(cap)
        if limit <= 0:
            return None
        excess = self.count(cap) - (limit - 1)
        if excess <= 0:
            return self.at
        column = 3 if cap == QuotaCap.CAMPAIGN else 1
        for row in self.buckets:
            excess -= row[column]
            if excess <= 0:
                return bucket_expiry(row[0])
        return self.at  # not reached: the buckets sum to the count

    def room(self, origin: str) -> int:
        """How many more DMs of `origin` the account may send now."""
        return max(0, min(self.limit(cap) - self.count(cap) for cap in _caps(origin)))

    def blocking(self, origin: str) -> tuple[QuotaCap, datetime | None] | None:
        """The cap that stops one more DM of `origin` now, with when it frees up (the one that frees up last), or
        None when it may go."""
        blocked = [(cap, self.reset_at(cap)) for cap in _caps(origin) if self.count(cap) >= self.limit(cap)]
        if not blocked:
            return None
        never = [b for b in blocked if b[1] is None]
        return never[0] if never else max(blocked, key=lambda b: b[1] or self.at)

    def next_free_at(self, origin: str) -> datetime | None:
        """When the next DM of `origin` may go: `at` when it may now; None when a limit of 0 forbids it."""
        blocked = self.blocking(origin)
        return self.at if blocked is None else blocked[1]


@dataclass(frozen=True)
class QuotaRoom:
    available: int  # DMs of the origin the account may send now
    next_at: datetime | None  # when the next one may go (now when available > 0; None: never, a limit of 0)
    cap: QuotaCap | None  # the cap that stops it, when available == 0


def quota_state(account_id: Any, now: datetime | None = None) -> QuotaState:
    """The account's quota now, read from its counter row in one query (no lock: for pacing and estimates)."""
    now = now or timezone.now()
    raw = AccountQuota.objects.filter(pk=account_id).values_list("buckets", flat=True).first()
    return QuotaState.of_row(raw, now)


def quota_room(account_id: Any, *, origin: str, now: datetime | None = None) -> QuotaRoom:
    """How many more DMs of `origin` (`campaign`, `flow`, `staff`...) the account may send now, and when the next
    one frees up: what a sender paces by. One query; the same caps `message_send` enforces (which stays the
    authority: it checks again under the row's lock)."""
    state = quota_state(account_id, now)
    blocked = state.blocking(origin)
    if blocked is None:
        return QuotaRoom(available=state.room(origin), next_at=state.at, cap=None)
    return QuotaRoom(available=0, next_at=blocked[1], cap=blocked[0])


class LockedQuota:
    """An account's counter row, locked for the rest of the transaction (`quota_lock`)."""

    def __init__(self, account_id: Any, raw: Any, now: datetime) -> None:
        self.account_id, self.now, self.buckets = account_id, now, _live(raw, now)

    def state(self) -> QuotaState:
        return QuotaState.of(self.buckets, self.now)

    def add(self, *, origin: str, at: datetime, delta: int = 1) -> bool:
        """Count a DM of `origin` created at `at` (delta -1 gives it back); False when its bucket left the window."""
        bucket = bucket_of(at)
        if bucket_expiry(bucket) <= self.now:
            return False
        counts = self.buckets.setdefault(bucket, [0, 0, 0])
        for column in _columns(origin):
            counts[column] = max(0, counts[column] + delta)
        return True

    def stored(self) -> dict[str, list[int]]:
        return {str(b): counts for b, counts in sorted(self.buckets.items()) if any(counts)}

    def save(self) -> None:
        AccountQuota.objects.filter(pk=self.account_id).update(buckets=self.stored(), updated_at=self.now)


def quota_lock(account_id: Any, now: datetime | None = None) -> LockedQuota:
    """The account's counter row under SELECT ... FOR UPDATE; call inside `transaction.atomic`. The account's first
    DM creates the row: INSERT ... ON CONFLICT DO NOTHING, so two first sends at once both end up locking the one
    row (the second waits for the first to commit) instead of one failing."""
    return quotas_lock([account_id], now)[account_id]


def quotas_lock(account_ids: list[Any], now: datetime | None = None) -> dict[Any, LockedQuota]:
    """`quota_lock` for many accounts in one SELECT, locked in key order (two batches never deadlock)."""
    now = now or timezone.now()
    locked = AccountQuota.objects.select_for_update().order_by("pk")
    raw = dict(locked.filter(pk__in=account_ids).values_list("pk", "buckets"))
    missing = [pk for pk in account_ids if pk not in raw]
    if missing:
        AccountQuota.objects.bulk_create([AccountQuota(account_id=pk) for pk in missing], ignore_conflicts=True)
        raw |= dict(locked.filter(pk__in=missing).values_list("pk", "buckets"))
    return {pk: LockedQuota(pk, raw.get(pk), now) for pk in account_ids}


def quotas_save(quotas: list[LockedQuota]) -> None:
    """`LockedQuota.save` for many rows in one UPDATE."""
    if len(quotas) == 1:
        quotas[0].save()
        return
    columns: list[tuple[str, Any]] = [
        ("k", AccountQuota._meta.pk),
        ("b", AccountQuota._meta.get_field("buckets")),
        ("now", AccountQuota._meta.get_field("updated_at")),
    ]
    values_update(
        AccountQuota,
        columns,
        [(q.account_id, q.stored(), q.now) for q in quotas],
        assignments="buckets = v.b, updated_at = v.now",
    )


def quota_count(*, message: Message, delta: int = 1, at: datetime | None = None) -> None:
    """Count `message` in its account's quota, in the bucket of `at` (default: when it was stored); delta -1 gives
    its count back, as a failed message does. Call in the transaction that stores or changes the message."""
    quota = quota_lock(message.account_id)
    if quota.add(origin=message.origin, at=min(at or message.created_at, quota.now), delta=delta):
        quota.save()


def quota_error(state: QuotaState, cap: QuotaCap, reset_at: datetime | None) -> RateLimited:
    """The 429 of a cap reached: `details.reason` names it, `resetAt` is when one more DM of the kind fits."""
    now = timezone.now()
    reset = reset_at or now + WINDOW
    retry_after = max(1, math.ceil((reset - now).total_seconds()))
    limit = state.limit(cap)
    messages = {
        QuotaCap.DAILY: f"The account's quota of {limit} DMs per 24 hours is used up",
        QuotaCap.RESERVE: (
            f"The account has used {state.used} of its {state.daily_limit} DMs per 24 hours: the last "
            f"{state.daily_limit - limit} are kept for conversation replies"
        ),
        QuotaCap.CAMPAIGN: f"The account's campaign limit of {limit} DMs per 24 hours is reached",
    }
    details: dict[str, Any] = {
        "reason": str(cap),
        "limit": limit,
        "used": state.count(cap),
        "resetAt": reset.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "retryAfter": retry_after,
    }
    if cap == QuotaCap.RESERVE:
        details["dailyLimit"], details["reserved"] = state.daily_limit, state.daily_limit - limit
    return RateLimited(messages[cap], details=details, headers={"Retry-After": str(retry_after)})
