"""The outcome of a claimed delivery, written only while it is still `sending` (so a lease that expired and was
reconciled meanwhile is never overwritten), and the recovery of deliveries whose worker died mid-send: the outbound
path looks at X's DM events before anything is sent again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus
from campaigns.rollup import FINAL, attempted_counted
from contacts.models import Message, MessageStatus
from contacts.services.message_states import message_found_at_x, message_mark_lost
from mktx.bulk import values_update
from mktx.xapi import XError, XRateLimited

logger = logging.getLogger("mktx.campaigns.deliveries")

RECONCILE_BATCH = 100
# a delivery being reconciled is taken for this long (its lookup at X and the record); a reconciler that dies
# leaves it to the next pass after that
RECONCILE_HOLD = timedelta(minutes=1)
RECONCILE_LIMITED = timedelta(minutes=15)  # X's DM-event window, when its 429 names no reset


def message_key(delivery_id: int, attempt: int) -> str:
    """The idempotency key of one attempt (claim) of a delivery."""
    return f"campaign-delivery:{delivery_id}:{attempt}"


def _this_claim(delivery: Delivery) -> Q:
    """The delivery while it is still `sending` under this claim (a lane whose lease expired meanwhile, and whose
    delivery was claimed again, records nothing over the new claim)."""
    return Q(pk=delivery.pk, attempts=delivery.attempts)


def delivery_finish(delivery: Delivery, status: str, reason: str = "", detail: str = "", **fields: Any) -> bool:
    """Its outcome, while it is still `sending` under this claim; a send answered (sent or failed) counted in the
    rollup with it."""
    with transaction.atomic():
        moved = Delivery.objects.filter(_this_claim(delivery), status=DeliveryStatus.SENDING).update(
            status=status, reason=reason, error_detail=detail[:500], lease_until=None, **fields
        )
        if moved and status in FINAL:
            attempted_counted([(delivery.account_id, fields.get("attempted_at") or delivery.created_at)])
    return bool(moved)


def delivery_sent(delivery: Delivery, message: Message, at: datetime) -> bool:
    return delivery_finish(
        delivery,
        DeliveryStatus.SENT,
        message=message,
        dm_event_id=message.twitter_message_id or "",
        sent_at=message.sent_at or at,
        attempted_at=at,
    )


@transaction.atomic
def deliveries_sent(sent: list[tuple[Delivery, Message, datetime]]) -> int:
    """`delivery_sent` for a batch of (delivery, its sent message, when) in one UPDATE from a VALUES list, each row
    only while it is still `sending` under its claim: the sender records its batch once instead of once per DM.
    Answers the rows recorded."""
    field = Delivery._meta.get_field
    columns: list[tuple[str, Any]] = [
        ("k", Delivery._meta.pk),
        ("claim", field("attempts")),
        ("message", Message._meta.pk),
        ("x_id", field("dm_event_id")),
        ("sent", field("sent_at")),
        ("tried", field("attempted_at")),
    ]
    rows = [(d.pk, d.attempts, m.pk, m.twitter_message_id or "", m.sent_at or at, at) for d, m, at in sent]
    recorded = values_update(
        Delivery,
        columns,
        rows,
        assignments=(
            f"status = '{DeliveryStatus.SENT}', reason = '', error_detail = '', lease_until = NULL, "
            "message_id = v.message, dm_event_id = v.x_id, sent_at = v.sent, attempted_at = v.tried"
        ),
        where=f"t.status = '{DeliveryStatus.SENDING}' AND t.attempts = v.claim",
        returning=True,
    )
    done = set(recorded)
    attempted_counted([(d.account_id, at) for d, _, at in sent if d.pk in done])
    return len(recorded)


def delivery_later(delivery_ids: list[int], at: datetime, *, failed: bool = False) -> int:
    """Back to `pending` until `at`; `failed` counts an X 5xx or timeout towards the three tries."""
    return Delivery.objects.filter(pk__in=delivery_ids, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING,
        lease_until=None,
        next_attempt_at=at,
        failures=F("failures") + (1 if failed else 0),
    )


def leases_reconcile(now: datetime) -> int:
    """Deliveries whose worker died mid-send: recorded as sent when X has the DM, sent again otherwise. Each one is
    taken (its lease moved on by RECONCILE_HOLD) before X is asked, so passes running at once in several lanes ask
    X once per delivery; an account whose DM events X refuses with a 429 is not asked again before X's reset."""
    done = 0
    limited: set[Any] = set()
    expired = Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_until__lt=now)
    for delivery in expired[:RECONCILE_BATCH]:
        if delivery.account_id in limited:
            continue
        taken = Delivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts, lease_until=delivery.lease_until
        ).update(lease_until=timezone.now() + RECONCILE_HOLD)
        if not taken:  # another pass has it
            continue
        message = (
            Message.objects.filter(
                account_id=delivery.account_id, idempotency_key=message_key(delivery.pk, delivery.attempts)
            )
            .select_related("account", "conversation__contact")
            .first()
        )
        if message is None:  # it never reached X (the message is stored before the call)
            delivery_later([delivery.pk], now)
        elif message.status == MessageStatus.SENT:
            delivery_sent(delivery, message, now)
        elif message.status == MessageStatus.FAILED:  # X answered an error after all: the retry looks at X first
            delivery_later([delivery.pk], now)
        else:
            try:
                found = message_found_at_x(message=message)
            except XRateLimited as exc:  # the account's lookups are spent: the rest of its deliveries wait with it
                until = (exc.reset_at or now + RECONCILE_LIMITED) + timedelta(seconds=1)
                Delivery.objects.filter(
                    status=DeliveryStatus.SENDING, account_id=delivery.account_id, lease_until__lt=until
                ).filter(Q(pk=delivery.pk) | Q(lease_until__lt=now)).update(lease_until=until)
                limited.add(delivery.account_id)
                logger.warning("account %s: X's DM event lookups are spent until %s", delivery.account_id, until)
                continue
            except XError as exc:
                Delivery.objects.filter(pk=delivery.pk).update(lease_until=now + timedelta(minutes=1))
                logger.warning("delivery %s: cannot reconcile yet: %s", delivery.pk, exc.message)
                continue
            if found:
                delivery_sent(delivery, message, now)
            else:
                message_mark_lost(message=message, detail="the worker stopped before X answered")
                delivery_later([delivery.pk], now)
        done += 1
    if done:
        logger.info("reconciled %s deliveries whose lease expired", done)
    return done
