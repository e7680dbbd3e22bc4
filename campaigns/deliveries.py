"""The outcome of a claimed delivery, written only while it is still `sending` (so a lease that expired and was
reconciled meanwhile is never overwritten), and the recovery of deliveries whose worker died mid-send: the outbound
path looks at X's DM events before anything is sent again."""

from __future__ import annotations

import logging
import operator
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.db import connection
from django.db.models import Case, F, Field, Q, Value, When
from django.db.models.functions import Cast

from campaigns.models import Delivery, DeliveryStatus
from contacts.models import Message, MessageStatus
from contacts.services.outbound import message_found_at_x, message_mark_lost
from mktx.xapi import XError

logger = logging.getLogger("mktx.campaigns.deliveries")

RECONCILE_BATCH = 100


def message_key(delivery_id: int, attempt: int) -> str:
    """The idempotency key of one attempt (claim) of a delivery."""
    return f"campaign-delivery:{delivery_id}:{attempt}"


def _this_claim(delivery: Delivery) -> Q:
    """The delivery while it is still `sending` under this claim (a lane whose lease expired meanwhile, and whose
    delivery was claimed again, records nothing over the new claim)."""
    return Q(pk=delivery.pk, attempts=delivery.attempts)


def delivery_finish(delivery: Delivery, status: str, reason: str = "", detail: str = "", **fields: Any) -> bool:
    return bool(
        Delivery.objects.filter(_this_claim(delivery), status=DeliveryStatus.SENDING).update(
            status=status, reason=reason, error_detail=detail[:500], lease_until=None, **fields
        )
    )


def delivery_sent(delivery: Delivery, message: Message, at: datetime) -> bool:
    return delivery_finish(
        delivery,
        DeliveryStatus.SENT,
        message=message,
        dm_event_id=message.twitter_message_id or "",
        sent_at=message.sent_at or at,
        attempted_at=at,
    )


def deliveries_sent(sent: list[tuple[Delivery, Message, datetime]]) -> int:
    """`delivery_sent` for a batch of (delivery, its sent message, when) in one UPDATE, each row only while it is
    still `sending`: the sender records its batch once instead of once per DM. Answers the rows recorded."""
    if not sent:
        return 0

    def per_row(name: str, value: Any) -> Any:
        field = Delivery._meta.get_field(name)
        assert isinstance(field, Field)
        whens = [When(pk=d.pk, then=Value(value(d, m, at), output_field=field)) for d, m, at in sent]
        case = Case(*whens, output_field=field)
        return Cast(case, output_field=field) if connection.features.requires_casted_case_in_updates else case

    claims = reduce(operator.or_, (_this_claim(d) for d, _, _ in sent))
    return Delivery.objects.filter(claims, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.SENT,
        reason="",
        error_detail="",
        lease_until=None,
        message_id=per_row("message", lambda d, m, at: m.pk),
        dm_event_id=per_row("dm_event_id", lambda d, m, at: m.twitter_message_id or ""),
        sent_at=per_row("sent_at", lambda d, m, at: m.sent_at or at),
        attempted_at=per_row("attempted_at", lambda d, m, at: at),
    )


def delivery_later(delivery_ids: list[int], at: datetime, *, failed: bool = False) -> int:
    """Back to `pending` until `at`; `failed` counts an X 5xx or timeout towards the three tries."""
    return Delivery.objects.filter(pk__in=delivery_ids, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING,
        lease_until=None,
        next_attempt_at=at,
        failures=F("failures") + (1 if failed else 0),
    )


def leases_reconcile(now: datetime) -> int:
    """Deliveries whose worker died mid-send: recorded as sent when X has the DM, sent again otherwise."""
    done = 0
    expired = Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_until__lt=now)
    for delivery in expired[:RECONCILE_BATCH]:
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
