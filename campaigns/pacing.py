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

from campaigns.models import AccountPacing
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


def slot_take(account_id: Any, now: datetime, holder: str) -> bool:
    """Take the account's slot when it is open: a compare-and-set, so two lanes never both send for one account.
    The hold ends by itself after MKTX_SENDER_LEASE_SECONDS (a lane that died)."""
    hold = now + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS)
    open_slot = Q(next_send_at__isnull=True) | Q(next_send_at__lte=now)
    for _ in range(2):
        if AccountPacing.objects.filter(open_slot, pk=account_id).update(
            next_send_at=hold, last_send_at=now, holder=holder
        ):
            return True
        _, created = AccountPacing.objects.get_or_create(account_id=account_id)  # the account's first send
        if not created:
            return False
    return False


def slot_release(
    account_id: Any, holder: str, *, next_at: datetime, reason: str, window: XWindow | None, sent_at: datetime | None
) -> None:
    """After the sends: the next one may go at `next_at`; X's window as last reported is kept for the next lane."""
    fields: dict[str, Any] = {"next_send_at": next_at, "holder": "", "reason": reason}
    if window is not None:
        fields |= {"x_limit": window.limit, "x_remaining": window.remaining, "x_reset_at": window.reset_at}
    if sent_at is not None:
        fields["last_send_at"] = sent_at
    AccountPacing.objects.filter(pk=account_id, holder=holder).update(**fields)
