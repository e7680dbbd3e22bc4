"""The pace of campaign DMs per X account (CONTRACT.md, "Campaign delivery pace").

The daily caps (MKTX_X_DM_DAILY_LIMIT, MKTX_CAMPAIGN_DAILY_LIMIT, the reply reserve) are caps over a rolling 24 h,
kept by the outbound path's quota row: a send that meets one is refused there and the account waits for the
window. The spacing comes from X's short window as its last `x-rate-limit-*` answer reported it: the sends X still
allows (`remaining`) evenly over the time to its `reset`; before X has answered once, one DM per
MKTX_MIN_SEND_INTERVAL_MS.

The account's slot (`AccountPacing`) is taken by compare-and-set, so any number of sender lanes and processes keep
one send per account in flight: a lane holds it (`next_send_at` pushed to the hold's end) while it sends, and on
release sets the next send's time from what X answered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from campaigns.models import AccountPacing
from mktx.bulk import values_update
from mktx.xapi.client import RateLimit

X_DM_WINDOW = timedelta(minutes=15)  # X's DM window (x-platform-notes.md): x-rate-limit-limit sends per 15 minutes


@dataclass(frozen=True)
class XWindow:
    """What X last said about an account's DM sends."""

    limit: int
    remaining: int
    reset_at: datetime

    @classmethod
    def of(cls, rate: RateLimit) -> XWindow:
        return cls(rate.limit, rate.remaining, datetime.fromtimestamp(rate.reset, tz=UTC))

    @classmethod
    def stored(cls, pacing: AccountPacing | None) -> XWindow | None:
        if pacing is None or pacing.x_limit is None or pacing.x_remaining is None or pacing.x_reset_at is None:
            return None
        return cls(pacing.x_limit, pacing.x_remaining, pacing.x_reset_at)


def min_interval() -> timedelta:
    return timedelta(milliseconds=settings.MKTX_MIN_SEND_INTERVAL_MS)


def next_send(window: XWindow | None, now: datetime) -> tuple[datetime, str]:
    """When the account's next DM may go after one sent at `now`, and what sets it."""
    if window is None or window.reset_at <= now:  # X has not answered yet, or its window has passed
        return now + min_interval(), "min_send_interval"
    if window.remaining <= 0:
        return window.reset_at + timedelta(seconds=1), "x_rate_limit"
    # the sends left, evenly before the reset: the last of them one step before it (15 per 15 minutes: one a minute)
    return now + (window.reset_at - now) / (window.remaining + 1), "x_rate_limit"


def steady_interval(window: XWindow | None) -> timedelta:
    """The spacing of a long run of sends: X's window over its limit, once X has told it."""
    if window is None or window.limit <= 0:
        return min_interval()
    return X_DM_WINDOW / window.limit


# --- the slot ---------------------------------------------------------------------------------------------------------


def slots_take(account_ids: list[Any], now: datetime, holder: str) -> set[Any]:
    """Take the slots of those accounts that are open: a compare-and-set in one UPDATE, so two lanes never both
    send for one account; answers the accounts taken. A hold ends by itself after MKTX_SENDER_LEASE_SECONDS (a lane
    that died). An account's first send makes its row."""
    hold = now + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS)
    open_slot = Q(next_send_at__isnull=True) | Q(next_send_at__lte=now)
    ids = list(account_ids)
    taken = AccountPacing.objects.filter(open_slot, pk__in=ids).update(
        next_send_at=hold, last_send_at=now, holder=holder
    )
    if taken == len(ids):
        return set(ids)
    missing = set(ids) - set(AccountPacing.objects.filter(pk__in=ids).values_list("pk", flat=True))
    if missing:
        AccountPacing.objects.bulk_create([AccountPacing(account_id=pk) for pk in missing], ignore_conflicts=True)
        AccountPacing.objects.filter(open_slot, pk__in=missing).update(
            next_send_at=hold, last_send_at=now, holder=holder
        )
    return set(AccountPacing.objects.filter(pk__in=ids, holder=holder, next_send_at=hold).values_list("pk", flat=True))


@dataclass(frozen=True)
class SlotRelease:
    """After an account's sends: its next one may go at `next_at` (`reason`); X's window as it last answered (None:
    X did not answer, the stored one stands), and when the last DM went."""

    account_id: Any
    next_at: datetime
    reason: str
    window: XWindow | None
    sent_at: datetime | None


def slots_release(holder: str, releases: list[SlotRelease]) -> None:
    """Give the slots back in one UPDATE, each only while this lane still holds it."""
    field, now = AccountPacing._meta.get_field, timezone.now()
    columns: list[tuple[str, Any]] = [
        ("k", AccountPacing._meta.pk),
        ("next_at", field("next_send_at")),
        ("why", field("reason")),
        ("lim", field("x_limit")),
        ("rem", field("x_remaining")),
        ("reset_at", field("x_reset_at")),
        ("sent_at", field("last_send_at")),
        ("now", field("updated_at")),
    ]
    rows = [
        (
            r.account_id,
            r.next_at,
            r.reason[:40],
            r.window.limit if r.window else None,
            r.window.remaining if r.window else None,
            r.window.reset_at if r.window else None,
            r.sent_at,
            now,
        )
        for r in releases
    ]
    values_update(
        AccountPacing,
        columns,
        rows,
        assignments=(
            "next_send_at = v.next_at, holder = '', reason = v.why, "
            "x_limit = CASE WHEN v.reset_at IS NULL THEN t.x_limit ELSE v.lim END, "
            "x_remaining = CASE WHEN v.reset_at IS NULL THEN t.x_remaining ELSE v.rem END, "
            "x_reset_at = COALESCE(v.reset_at, t.x_reset_at), "
            "last_send_at = COALESCE(v.sent_at, t.last_send_at), updated_at = v.now"
        ),
        where="t.holder = %s",
        where_params=[holder],
    )
