"""The campaign sender: it claims deliveries and sends them, paced per X account, exactly once each (the lanes that
run it, pass after pass, are lanes.py's).

Claiming. With an account's slot taken (pacing.py, a compare-and-set), a batch of the account's due deliveries is
claimed in one statement (`FOR UPDATE SKIP LOCKED`, `pending` -> `sending` with a lease), or, for many accounts at
X's pace, each one's next delivery in one statement; they are sent through one OutboundBatch, an account's one after
the other: one send per account in flight, any number of lanes and processes sharing the accounts.

Exactly once. Each claim has its own idempotency key, the DM goes through the inbox's one outbound path, and the
delivery is recorded with X's DM event id. A retry after an unclear failure (a timeout, a 5xx, a worker that died)
first asks the outbound path whether X has the DM (`message_found_at_x`): found, it is recorded, not sent again.

State changes of campaigns and runs (firing, completing, expiring) are lifecycle.py's; this module calls them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns import lifecycle
from campaigns.deliveries import (
    deliveries_sent,
    delivery_finish,
    delivery_later,
    delivery_sent,
    message_key,
)
from campaigns.links import links_track_many
from campaigns.media import RunMedia
from campaigns.models import AccountPacing, Delivery, DeliveryStatus
from campaigns.pacing import XWindow, next_send
from campaigns.templating import render
from contacts.models import Conversation, Message, MessageOrigin, MessageStatus
from contacts.services.conversations import conversation_open_for
from contacts.services.message_states import message_found_at_x
from contacts.services.outbound import Attachment, SendSkipped, message_send
from contacts.services.outbound_batch import OutboundBatch, OutboundDM
from mktx.accounts.models import Account
from mktx.api.errors import ApiError, RateLimited
from mktx.xapi import XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.client import RateLimit
from mktx.xapi.errors import XBadRequest

logger = logging.getLogger("mktx.campaigns.sender")

MAX_TRIES = 3
RETRY_BACKOFF = (timedelta(seconds=30), timedelta(minutes=2))
# a retry first looks at X's DM events for its earlier tries; when X cannot answer, again 30 s later, this many
# times (about 10 minutes), then the delivery fails `x_unclear` (neither sent blind nor retried for ever)
UNCLEAR_RECHECKS = 20
BACK_TO_BACK = timedelta(milliseconds=50)  # a spacing this short is no reason to let go of the account
UNCLEAR = ("Timeout", "ServerError", "Unavailable", "Lost")  # error codes after which X may have sent the DM


def due_deliveries(now: datetime) -> Any:
    """Pending deliveries of running campaigns whose time has come."""
    return Delivery.objects.filter(lifecycle.ACTIVE_RUN, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


# --- claiming -----------------------------------------------------------------------------------------------------


def _claim(deliveries: Any, now: datetime) -> int:
    lease = now + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS)
    return int(
        deliveries.update(status=DeliveryStatus.SENDING, lease_until=lease, claimed_at=now, attempts=F("attempts") + 1)
    )


def _claimed(account_ids: list[Any], now: datetime) -> list[Delivery]:
    """The deliveries just claimed for these accounts, ready to send (an account's in order)."""
    return list(
        Delivery.objects.filter(account_id__in=account_ids, status=DeliveryStatus.SENDING, claimed_at=now)
        .select_related("campaign__template", "contact", "run")
        .order_by("account_id", "next_attempt_at", "id")
    )


def deliveries_claim(account_id: Any, now: datetime, *, limit: int, closed: set[Any]) -> list[Delivery]:
    """Claim up to `limit` of the account's due deliveries (not those of campaigns whose send window is closed) in
    one UPDATE over a `FOR UPDATE SKIP LOCKED` selection; the claimed rows, ready to send."""
    due = (
        due_deliveries(now)
        .filter(account_id=account_id)
        .exclude(campaign_id__in=closed)
        .order_by("next_attempt_at", "id")
    )
    with transaction.atomic():
        picked = due.select_for_update(skip_locked=True, of=("self",)).values("pk")[:limit]
        claimed = _claim(Delivery.objects.filter(pk__in=Subquery(picked), status=DeliveryStatus.PENDING), now)
    return _claimed([account_id], now) if claimed else []


def deliveries_claim_turns(account_ids: list[Any], now: datetime, *, closed: set[Any]) -> list[Delivery]:
    """Claim the next due delivery of each of these accounts (their turns at X's pace) in one UPDATE. The lane
    holds the accounts' slots, so no other lane claims for them; a delivery that stopped being pending meanwhile
    (a cancel, a sweep) is left out."""
    turn = due_deliveries(now).filter(account_id=OuterRef("pk")).exclude(campaign_id__in=closed)
    picked = (
        Account.objects.filter(pk__in=account_ids)
        .annotate(turn=Subquery(turn.order_by("next_attempt_at", "id").values("pk")[:1]))
        .filter(turn__isnull=False)
        .values("turn")
    )
    claimed = _claim(Delivery.objects.filter(pk__in=picked, status=DeliveryStatus.PENDING), now)
    return _claimed(account_ids, now) if claimed else []


def deliveries_unclaim(deliveries: list[Delivery]) -> None:
    """Claimed but not sent (the account had to stop): pending again, the claim not counted."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING, lease_until=None, attempts=F("attempts") - 1
    )


def _conversations(contacts: list[Any]) -> dict[Any, Conversation]:
    """Where each contact's campaign DM is recorded: its latest conversation (a closed one stays closed: a reply
    opens one, as any inbound DM does), read for the whole batch at once; a contact never talked to (a follower)
    gets its first conversation."""
    latest: dict[Any, Conversation] = {}
    ids = [contact.pk for contact in contacts]
    for conversation in Conversation.objects.filter(contact_id__in=ids).order_by("-last_message_at"):
        latest.setdefault(conversation.contact_id, conversation)
    for contact in contacts:
        if contact.pk not in latest:
            latest[contact.pk] = conversation_open_for(contact=contact, at=timezone.now())
    return latest


def campaign_conversation(contact: Any) -> Conversation:
    """The conversation a campaign DM to one contact is recorded in (test sends)."""
    return _conversations([contact])[contact.pk]


# --- sending ------------------------------------------------------------------------------------------------------


@dataclass
class AccountRun:
    """What one lane learnt while sending a batch for an account: X's window and when the account may go next."""

    window: XWindow | None
    next_at: datetime | None = None
    reason: str = ""
    last_sent_at: datetime | None = None
    stop: bool = False  # the account must not send more now (a cap, X's 429, its token)
    recorded: list[tuple[Delivery, Message, datetime]] = field(default_factory=list)  # sent, not yet written
    heard: bool = False  # X answered with its headers during this run (else the stored window is kept as it is)

    def rate_limit(self, rate: RateLimit) -> None:
        self.window, self.heard = XWindow.of(rate), True

    def wait_until(self, at: datetime, reason: str) -> None:
        self.stop = True
        if self.next_at is None or at > self.next_at:
            self.next_at, self.reason = at, reason


def _earlier_attempt_landed(delivery: Delivery, now: datetime) -> bool:
    """Before a retry: did an earlier attempt whose outcome was unclear (a timeout, a 5xx, a worker that stopped)
    reach X after all? Then it is recorded instead of sending again."""
    earlier = Message.objects.filter(
        account_id=delivery.account_id,
        idempotency_key__in=[message_key(delivery.pk, n) for n in range(1, delivery.attempts)],
    ).filter(
        Q(status__in=[MessageStatus.SENT, MessageStatus.PENDING])
        | Q(status=MessageStatus.FAILED, error_code__in=UNCLEAR)
    )
    for message in earlier.select_related("account", "conversation__contact").order_by("-created_at"):
        if message.status == MessageStatus.SENT or message_found_at_x(message=message):
            return delivery_sent(delivery, message, now)
    return False


def _campaign_dm(delivery: Delivery, text: str, conversation: Conversation) -> OutboundDM:
    """What a delivery sends: its text (rendered, links tracked) and card image, under this claim's key."""
    campaign = delivery.campaign
    assert campaign.template is not None and delivery.contact is not None
    conversation.account, conversation.contact = delivery.account, delivery.contact  # already loaded: no query
    image = _image_of(delivery)
    return OutboundDM(
        conversation=conversation,
        content=text,
        origin=MessageOrigin.CAMPAIGN,
        idempotency_key=message_key(delivery.pk, delivery.attempts),
        message_type=campaign.template.type,
        attachments=[Attachment(image, uploads=RunMedia(delivery.run))] if image else [],
        metadata={"campaignId": str(campaign.pk), "deliveryId": delivery.pk, "run": delivery.run.number},
        marketing=True,
    )


def delivery_send(delivery: Delivery, text: str, conversation: Conversation | None, run: AccountRun) -> str:
    """Send one claimed delivery whose text is rendered (links tracked), on its own (a retry, which first looks at
    X for an earlier attempt); the status it ends in. First attempts go in an OutboundBatch (`_batch_send`)."""
    now = timezone.now()
    if delivery.contact is None or conversation is None:
        delivery_finish(delivery, DeliveryStatus.SKIPPED, "contact_erased", attempted_at=now)
        return DeliveryStatus.SKIPPED
    if delivery.attempts > 1:
        try:
            if _earlier_attempt_landed(delivery, now):
                return DeliveryStatus.SENT
        except XRateLimited as exc:  # X's DM events, for this account's window: look after its reset
            delivery_later([delivery.pk], exc.reset_at or now + timedelta(minutes=15))
            return DeliveryStatus.PENDING
        except XError as exc:  # cannot tell yet whether it landed: never resend blind
            if delivery.attempts - delivery.failures > UNCLEAR_RECHECKS:  # ... but not for ever
                delivery_finish(delivery, DeliveryStatus.FAILED, "x_unclear", exc.message, attempted_at=now)
                return DeliveryStatus.FAILED
            delivery_later([delivery.pk], now + RETRY_BACKOFF[0])
            logger.warning("delivery %s: X's DM events unavailable (%s); later", delivery.pk, exc.message)
            return DeliveryStatus.PENDING
        if delivery.failures >= MAX_TRIES:  # its three tries are spent, and none of them reached X
            delivery_finish(
                delivery, DeliveryStatus.FAILED, "x_error", "X failed three tries", attempted_at=now, failures=MAX_TRIES
            )
            return DeliveryStatus.FAILED
    dm = _campaign_dm(delivery, text, conversation)
    try:
        message = message_send(
            conversation=dm.conversation,
            content=dm.content,
            origin=dm.origin,
            message_type=dm.message_type,
            attachments=dm.attachments,
            marketing=dm.marketing,
            idempotency_key=dm.idempotency_key,
            metadata=dm.metadata,
            on_rate_limit=run.rate_limit,
        )
    except ApiError as exc:
        return _refused(delivery, exc, now, run)
    return _answered(delivery, message, now, run)


def _answered(delivery: Delivery, message: Message, now: datetime, run: AccountRun) -> str:
    if message.status != MessageStatus.SENT:  # the key answered an earlier message: look at X on the next try
        delivery_later([delivery.pk], now)
        return DeliveryStatus.PENDING
    run.recorded.append((delivery, message, now))
    run.last_sent_at = now
    return DeliveryStatus.SENT


def _refused(delivery: Delivery, exc: ApiError, now: datetime, run: AccountRun) -> str:
    """A send that the outbound path refused (a rule, a cap) or that X refused or failed (`exc.__cause__`)."""
    if isinstance(exc, SendSkipped):
        delivery_finish(delivery, DeliveryStatus.SKIPPED, exc.reason, exc.message, attempted_at=now)
        if exc.reason == "account_inactive":
            run.stop = True
        return DeliveryStatus.SKIPPED
    if isinstance(exc, RateLimited) and exc.__cause__ is None:  # a cap of the rolling 24 h (quota, reserve, campaign)
        reset = parse_datetime(str(exc.details.get("resetAt", ""))) or now + timedelta(hours=24)
        delivery_later([delivery.pk], reset)
        run.wait_until(reset, str(exc.details.get("reason", "daily_quota")))
        return DeliveryStatus.PENDING
    return _failed_send(delivery, exc.__cause__, exc.message, now, run)


def _batched_send(batch: OutboundBatch, delivery: Delivery, dm: OutboundDM, run: AccountRun) -> str:
    """One delivery of a prepared batch: what the outbound path decided for it, else its call to X."""
    now = timezone.now()
    if dm.refusal is not None:
        return _refused(delivery, dm.refusal, now, run)
    assert dm.message is not None
    if dm.earlier:
        return _answered(delivery, dm.message, now, run)
    batch.send(dm)
    if dm.rate_limit is not None:
        run.rate_limit(dm.rate_limit)
    if dm.error is not None:
        cause = dm.error if isinstance(dm.error, XError) else None
        return _failed_send(delivery, cause, dm.error.message, now, run)
    return _answered(delivery, dm.message, now, run)


def _image_of(delivery: Delivery) -> str:
    template = delivery.campaign.template
    return str((template.card or {}).get("imageUrl", "")) if template is not None else ""


def _failed_send(delivery: Delivery, cause: BaseException | None, detail: str, now: datetime, run: AccountRun) -> str:
    if isinstance(cause, XRateLimited):
        reset = cause.reset_at or now + timedelta(minutes=15)
        delivery_later([delivery.pk], reset)
        run.wait_until(reset + timedelta(seconds=1), "x_rate_limit")
        return DeliveryStatus.PENDING
    if isinstance(cause, XInvalidToken):
        delivery_finish(delivery, DeliveryStatus.SKIPPED, "account_inactive", cause.message, attempted_at=now)
        run.stop = True
        return DeliveryStatus.SKIPPED
    if isinstance(cause, XForbidden):  # final: never retried blindly (x-platform-notes.md)
        delivery_finish(delivery, DeliveryStatus.FAILED, cause.reason, cause.message, attempted_at=now)
        return DeliveryStatus.FAILED
    if isinstance(cause, XBadRequest) or not isinstance(cause, XError):
        delivery_finish(delivery, DeliveryStatus.FAILED, "rejected", detail, attempted_at=now)
        return DeliveryStatus.FAILED
    # X is in trouble: the account backs off (the rest of the batch and its other deliveries wait with it)
    backoff = RETRY_BACKOFF[min(delivery.failures, len(RETRY_BACKOFF) - 1)]
    run.wait_until(now + backoff, "x_error")
    # 5xx, timeouts, X unreachable: three tries. Any of them may have reached X (a 5xx or a timeout after sending),
    # so after the third the delivery comes back once more to look at X's DM events before it is failed (found by
    # bench/chaos.py x-faults: a third try answered 503 after sending was failed while its DM was at X)
    delivery_later([delivery.pk], now + backoff, failed=True)
    return DeliveryStatus.PENDING


def _rendered(deliveries: list[Delivery]) -> list[tuple[Delivery, str]]:
    """Each delivery's text (links tracked for the whole batch at once); the ones that cannot be rendered are
    finished here. Answers the ready ones."""
    now = timezone.now()
    texts: dict[int, str] = {}
    for delivery in deliveries:
        template = delivery.campaign.template
        if template is None:
            delivery_finish(delivery, DeliveryStatus.FAILED, "template_deleted", attempted_at=now)
            continue
        if delivery.contact is None:
            texts[delivery.pk] = ""
            continue
        try:
            texts[delivery.pk] = render(template, variables=delivery.campaign.variables, contact=delivery.contact).text
        except ApiError as exc:  # the audience was checked at start; a contact changed since
            delivery_finish(delivery, DeliveryStatus.SKIPPED, "missing_value", exc.message, attempted_at=now)
    tracked = links_track_many({pk: text for pk, text in texts.items() if text})
    return [(d, tracked.get(d.pk, "")) for d in deliveries if d.pk in texts]


def accounts_send(
    accounts: list[Account],
    pacing: dict[Any, AccountPacing],
    now: datetime,
    closed: set[Any],
    closings: dict[Any, datetime] | None = None,
    *,
    limit: int,
) -> dict[Any, AccountRun]:
    """Send for accounts whose slots this lane holds: a batch of up to `limit` deliveries of one account that X
    lets send back to back, or (`limit` 1) the next DM of each of many accounts at X's pace, their turns in one
    batch. No send of a campaign begins after the last moment its open send window allows (`closings`: campaign
    id -> that moment): the rest is left to the next opening. Answers each account's run."""
    assert limit == 1 or len(accounts) == 1
    closings = closings or {}
    runs = {a.pk: AccountRun(window=XWindow.stored(pacing.get(a.pk))) for a in accounts}
    by_pk = {a.pk: a for a in accounts}
    if limit > 1:
        deliveries = deliveries_claim(accounts[0].pk, now, limit=limit, closed=closed)
    else:
        deliveries = deliveries_claim_turns(list(by_pk), now, closed=closed)
    for delivery in deliveries:
        delivery.account = by_pk[delivery.account_id]
    busy = {d.account_id for d in deliveries}
    for pk, run in runs.items():
        if pk not in busy:
            run.next_at, run.reason = now, "idle"
    if not deliveries:
        return runs
    conversations = _conversations([d.contact for d in deliveries if d.contact is not None])
    ready = _rendered(deliveries)
    try:
        _batch_send(ready, conversations, closings, runs, now)
    finally:
        # one UPDATE for every sent delivery; until then they stay `sending` under their lease, and a lane that died
        # meanwhile leaves them to `leases_reconcile`, which finds their messages sent
        deliveries_sent([entry for pk in busy for entry in runs[pk].recorded])
    for pk in busy:
        run = runs[pk]
        run.recorded = []
        if not run.stop:
            run.next_at, run.reason = next_send(run.window, run.last_sent_at or timezone.now())
    return runs


def _batch_send(
    ready: list[tuple[Delivery, str]],
    conversations: dict[Any, Conversation],
    closings: dict[Any, datetime],
    runs: dict[Any, AccountRun],
    claimed_at: datetime,
) -> None:
    """Send the claimed deliveries, each account's one after the other at X's spacing: first attempts through one
    OutboundBatch (stored before, recorded after: two transactions for all), retries one by one. What must not go
    now is unclaimed: an account's rest after a stop or when its spacing grows, a campaign's after its send window
    closed, and everything once the batch has outlasted half of its lease (a slow X: the lease must never expire
    under a batch still sending)."""
    deadline = claimed_at + timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS / 2)
    batched: dict[int, OutboundDM] = {}
    sequences: dict[Any, list[tuple[Delivery, str]]] = {}
    for delivery, text in ready:
        sequences.setdefault(delivery.account_id, []).append((delivery, text))
        conversation = conversations.get(delivery.contact_id)
        if delivery.attempts == 1 and delivery.contact is not None and conversation is not None:
            batched[delivery.pk] = _campaign_dm(delivery, text, conversation)
    batch = OutboundBatch(list(batched.values()))
    batch.prepare()
    begun: set[int] = set()  # should a send raise, its lease lets the sweep reconcile it; the rest is unclaimed
    try:
        for account_id, sequence in sequences.items():
            run = runs[account_id]
            for i, (delivery, text) in enumerate(sequence):
                current = timezone.now()
                closing = closings.get(delivery.campaign_id)
                if current >= deadline and begun:
                    return
                if closing is not None and current >= closing:
                    break
                begun.add(delivery.pk)
                dm = batched.get(delivery.pk)
                if dm is None:
                    delivery_send(delivery, text, conversations.get(delivery.contact_id), run)
                else:
                    _batched_send(batch, delivery, dm, run)
                if i + 1 == len(sequence):
                    break
                sent_at = timezone.now()
                following, _ = next_send(run.window, sent_at)
                if run.stop or following - sent_at > BACK_TO_BACK:
                    break
                if following > sent_at:  # a few milliseconds: X's window, spread evenly
                    time.sleep((following - sent_at).total_seconds())
    finally:
        batch.record()
        deliveries_unclaim([d for d, _ in ready if d.pk not in begun])
