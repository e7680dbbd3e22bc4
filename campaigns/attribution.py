"""Engagement with campaign DMs, recorded on the deliveries when it happens (so it survives a contact's erasure):
`opened` when a read receipt covers the delivery's DM, `replied` when the recipient DMs the account within the
attribution window (MKTX_REPLY_ATTRIBUTION_HOURS, 72 h) after it. Clicks are recorded by links.link_click."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from campaigns.models import Delivery, DeliveryStatus
from contacts.hooks import campaign_replied_fire
from contacts.models import Message, MessageDirection
from mktx.accounts.models import Account
from mktx.memo import memo_seed, memoized


def deliveries_opened(*, account: Account, reader_id: str, at: datetime) -> int:
    """After a read receipt marked the account's DMs read: their deliveries are opened."""
    return Delivery.objects.filter(
        account=account,
        contact__twitter_user_id=reader_id,
        status=DeliveryStatus.SENT,
        opened_at__isnull=True,
        message__read_at__isnull=False,
    ).update(opened_at=at)


def deliveries_replied_prefetch(*, contact_ids: list[Any], at: list[datetime]) -> None:
    """In a batch (mktx/memo.py) of DMs from these contacts, sent at `at`: which contacts have a delivery the DMs
    may reply to, read once, so that `deliveries_replied` looks no further for the others."""
    if not at:
        return
    window = timedelta(hours=settings.MKTX_REPLY_ATTRIBUTION_HOURS)
    unreplied = set(
        Delivery.objects.filter(
            contact_id__in=set(contact_ids),
            status=DeliveryStatus.SENT,
            replied_at__isnull=True,
            sent_at__lte=max(at),
            sent_at__gte=min(at) - window,
        ).values_list("contact_id", flat=True)
    )
    memo_seed({("unreplied deliveries", pk): pk in unreplied for pk in contact_ids})


def deliveries_replied(*, message: Message | None, hooks: bool = True) -> int:
    """An inbound DM: the deliveries sent to its sender within the window before it are replied to, and each
    campaign replied to is told to the `campaign_replied` listener (contacts/hooks.py) once; `hooks=False` for a
    DM that triggers nothing (a consent keyword). How many deliveries."""
    if message is None or message.direction != MessageDirection.INBOUND:
        return 0
    window = timedelta(hours=settings.MKTX_REPLY_ATTRIBUTION_HOURS)
    at = message.sent_at or message.created_at
    contact_id = message.conversation.contact_id
    if not memoized(("unreplied deliveries", contact_id), lambda: True):  # none (deliveries_replied_prefetch)
        return 0
    unreplied = Delivery.objects.filter(
        contact_id=contact_id,
        status=DeliveryStatus.SENT,
        replied_at__isnull=True,
        sent_at__lte=at,
        sent_at__gte=at - window,
    )
    if not unreplied.exists():  # most DMs: one query, as a bare UPDATE would be
        return 0
    with transaction.atomic():
        # locked, so that of two replies at once only the one that marks a delivery tells its campaign
        rows = list(unreplied.select_for_update().values_list("pk", "campaign_id"))
        replied = Delivery.objects.filter(pk__in=[pk for pk, _ in rows]).update(replied_at=at)
        if hooks and rows:
            contact = message.conversation.contact
            for campaign_id in dict.fromkeys(campaign_id for _, campaign_id in rows):
                campaign_replied_fire(contact=contact, campaign_id=campaign_id)
    return replied
