"""`OutboundBatch`: many DMs under the rules of `outbound.message_send`, at the cost of two transactions for all of
them instead of two per DM (the campaign sender's batches and the accounts' turns)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts.models import Conversation, Message, MessageStatus
from contacts.services.contacts import contacts_messages_sent
from contacts.services.message_states import RESPONSE_ORIGINS, message_fail_for
from contacts.services.outbound import (
    Attachment,
    check_content,
    check_sendable,
    conversations_outbound_added,
    conversations_outbound_withdrawn,
    pending_message,
    refetch_image,
    reusable_media,
    send_to_x,
    sending_client,
)
from contacts.services.quota import bucket_of, quota_error, quotas_lock, quotas_save
from mktx.accounts.services import account_revoked
from mktx.api.errors import ApiError
from mktx.bulk import values_update
from mktx.xapi import RateLimit, XError, XInvalidToken

logger = logging.getLogger("mktx.outbound")


@dataclass
class OutboundDM:
    """One DM of an `OutboundBatch`: what and where (the conversation with its account and contact loaded), and,
    once the batch has gone over it, what became of it. `refusal` is why it was not stored (the rules of
    `message_send`: SendSkipped, RateLimited naming the cap, InvalidInput); `message` is its stored Message (an
    earlier one when the idempotency key had been used: then it is not sent again); `error` is X's refusal or
    failure (the message is `failed`), and `dm_event_id` set once X took it."""

    conversation: Conversation
    content: str
    origin: str
    idempotency_key: str
    message_type: str = "text"
    attachments: list[Attachment] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    marketing: bool = False
    refusal: ApiError | None = None
    message: Message | None = None
    error: XError | ApiError | None = None
    dm_event_id: str = ""
    sent_at: datetime | None = None
    rate_limit: RateLimit | None = None
    attempted: bool = False  # the call to X began (an outcome not heard then is X's to tell: it stays pending)
    earlier: bool = False  # `message` is the key's earlier message, not one stored by this batch

    @property
    def sendable(self) -> bool:
        """Stored by this batch and not yet sent: `OutboundBatch.send` may go."""
        return self.message is not None and not self.earlier and not self.attempted


class OutboundBatch:
    """Many DMs (a campaign sender's batch, the accounts' turns of one pass) under the rules of `message_send`, at
    the cost of two transactions for all of them instead of two per DM:

    - `prepare()`: the checks of `message_send`, then one transaction that locks each account's quota row,
      applies its caps DM after DM, inserts every pending Message and counts them (quota, conversations);
    - `send(dm)`, DM after DM at whatever pace the caller keeps: the call to X with one client (one kept-alive
      connection) per account; nothing is written;
    - `record()`: one transaction that marks the sent ones `sent` (those X's echo had not marked already) and
      counts them on their contacts, marks X's refusals `failed` (their quota given back), and withdraws what
      was never sent (deleted, uncounted). A DM whose call began without an answer heard stays `pending`: only
      X can tell (`message_found_at_x`).

    A process that dies in between leaves pending Messages, reconciled against X as any unclear send is. Only
    for origins that answer no one (campaigns, flows): a staff or bot reply goes through `message_send`, which
    ends the contact's wait for an answer."""

    def __init__(self, dms: list[OutboundDM]) -> None:
        assert all(dm.origin not in RESPONSE_ORIGINS for dm in dms), "replies go through message_send"
        self.dms = dms
        self._clients: dict[Any, Any] = {}  # per account: its X client, or why it has none (SendSkipped)

    def prepare(self) -> None:
        checked = [dm for dm in self.dms if self._check(dm)]
        for _ in range(2):
            try:
                self._store(checked)
                return
            except IntegrityError:  # a key stored concurrently (never by a claim of our own): look again
                for dm in checked:
                    dm.message, dm.refusal, dm.earlier = None, None, False
        raise RuntimeError("idempotency keys kept colliding")

    def _check(self, dm: OutboundDM) -> bool:
        account, contact = dm.conversation.account, dm.conversation.contact
        try:
            check_sendable(account, contact, dm.marketing)
            check_content(dm.content, dm.attachments)
            if account.pk not in self._clients:
                try:
                    self._clients[account.pk] = sending_client(account)
                except ApiError as exc:  # unreadable tokens: the account is marked once, its DMs all refused
                    self._clients[account.pk] = exc
            if isinstance(client := self._clients[account.pk], ApiError):
                raise client
        except ApiError as exc:
            dm.refusal = exc
            return False
        return True

    def _store(self, dms: list[OutboundDM]) -> None:
        by_account: dict[Any, list[OutboundDM]] = {}
        for dm in dms:
            by_account.setdefault(dm.conversation.account_id, []).append(dm)
        with transaction.atomic():
            earlier = {
                (m.account_id, m.idempotency_key): m
                for m in Message.objects.filter(
                    account_id__in=list(by_account), idempotency_key__in=[dm.idempotency_key for dm in dms]
                )
            }
            fresh: list[Message] = []
            quotas = quotas_lock(list(by_account))
            for account_id, quota in quotas.items():
                for dm in by_account[account_id]:
                    if (found := earlier.get((account_id, dm.idempotency_key))) is not None:
                        dm.message, dm.earlier = found, True
                        continue
                    state = quota.state()
                    if (blocked := state.blocking(dm.origin)) is not None:
                        dm.refusal = quota_error(state, *blocked)
                        continue
                    dm.message = pending_message(
                        dm.conversation,
                        content=dm.content,
                        message_type=dm.message_type,
                        attachments=dm.attachments,
                        origin=dm.origin,
                        sent_by_id=None,
                        idempotency_key=dm.idempotency_key,
                        metadata=dm.metadata,
                    )
                    fresh.append(dm.message)
                    quota.add(origin=dm.origin, at=quota.now)
            Message.objects.bulk_create(fresh)  # each one's created_at is set now
            for message in fresh:  # counted in the bucket of its created_at, where a give-back will look for it
                quota = quotas[message.account_id]
                if bucket_of(message.created_at) != bucket_of(quota.now):
                    quota.add(origin=message.origin, at=quota.now, delta=-1)
                    quota.add(origin=message.origin, at=message.created_at)
            quotas_save(list(quotas.values()))
            conversations_outbound_added([m.conversation_id for m in fresh], timezone.now())

    def send(self, dm: OutboundDM) -> None:
        """The call to X for one prepared DM (`dm.sendable`): `dm_event_id` and `sent_at`, or `error`; X's rate
        limit as its answer reported it in `rate_limit`. A token X refuses stops the account (`account_revoked`)."""
        assert dm.sendable and dm.message is not None
        account, contact = dm.conversation.account, dm.conversation.contact
        heard: list[RateLimit] = []
        dm.attempted = True
        client = self._clients[account.pk]
        try:
            # the image is fetched when no earlier DM of the batch has uploaded it (a run's card: once)
            reused = reusable_media(account, dm.attachments)
            images = [] if reused or not dm.attachments else [refetch_image(dm.message, dm.attachments[0])]
            sent = send_to_x(
                client, account, contact, dm.message, dm.content, dm.attachments, images, reused, heard.append
            )
        except XError as exc:
            dm.error = exc
            logger.warning("DM %s to %s failed: %s", dm.message.pk, contact.twitter_user_id, exc.message)
            if isinstance(exc, XInvalidToken):
                account_revoked(twitter_user_id=account.twitter_user_id, reason="X refused the account's token")
        except ApiError as exc:  # the image could not be fetched: the message is failed already
            dm.error = exc
        else:  # the Message as `record()` will store it
            dm.dm_event_id, dm.sent_at = sent.dm_event_id, timezone.now()
            dm.message.status, dm.message.twitter_message_id = MessageStatus.SENT, dm.dm_event_id
            dm.message.sent_at = dm.sent_at
        dm.rate_limit = heard[-1] if heard else None

    def record(self) -> None:
        """Write every outcome (see the class); once, after the sends."""
        stored = [dm for dm in self.dms if dm.message is not None and not dm.earlier]
        sent = [dm for dm in stored if dm.dm_event_id]
        failed = [dm for dm in stored if dm.error is not None and dm.message.status == MessageStatus.PENDING]  # type: ignore[union-attr]
        withdrawn = [dm for dm in stored if not dm.attempted]
        if not (sent or failed or withdrawn):
            return
        with transaction.atomic():
            moved = set(
                values_update(
                    Message,
                    [
                        ("k", Message._meta.pk),
                        ("x_id", Message._meta.get_field("twitter_message_id")),
                        ("at", Message._meta.get_field("sent_at")),
                    ],
                    [(dm.message.pk, dm.dm_event_id, dm.sent_at) for dm in sent],  # type: ignore[union-attr]
                    assignments="status = 'sent', twitter_message_id = v.x_id, sent_at = v.at",
                    where="t.status = 'pending'",
                    returning=True,
                )
            )
            contacts_messages_sent([(dm.conversation.contact_id, dm.sent_at) for dm in sent if dm.message.pk in moved])  # type: ignore[misc, union-attr]
            for dm in failed:
                assert dm.message is not None and dm.error is not None
                if isinstance(dm.error, XError):
                    message_fail_for(dm.message, dm.error)
            if withdrawn:
                self._withdraw(withdrawn)

    def _withdraw(self, dms: list[OutboundDM]) -> None:
        """Pending messages the caller did not send after all: deleted, their quota and conversation counts given
        back (`conversations_outbound_withdrawn`)."""
        ids = [dm.message.pk for dm in dms]  # type: ignore[union-attr]
        gone = set(Message.objects.filter(pk__in=ids, status=MessageStatus.PENDING).values_list("pk", flat=True))
        Message.objects.filter(pk__in=gone).delete()
        by_account: dict[Any, list[Message]] = {}
        for dm in dms:
            if dm.message is not None and dm.message.pk in gone:
                by_account.setdefault(dm.message.account_id, []).append(dm.message)
                dm.message = None
        quotas = quotas_lock(list(by_account))
        for account_id, quota in quotas.items():
            for message in by_account[account_id]:
                quota.add(origin=message.origin, at=min(message.created_at, quota.now), delta=-1)
        quotas_save(list(quotas.values()))
        conversations_outbound_withdrawn([m.conversation_id for messages in by_account.values() for m in messages])
