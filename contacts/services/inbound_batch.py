"""Many customers' DMs recorded at once: what `dm_record` does for one inbound DM, for a drain's batch of them, with
one statement per step for all (found by bench/load.py: one DM at a time cost 23 statements and 12 ms of a
worker's CPU, so a drain kept up with about 35 webhooks a second on two cores).

Steps, each one statement for the batch: the DMs stored already; the senders' contacts; their open conversations;
the messages; their counts in the rollup and the contacts' activity; the conversations' counters; the contacts'.
What is new to the service (a contact, a conversation) is made one at a time through the single path, so that its
listeners and counts are the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contacts.models import Contact, ContactSource, Conversation, ConversationStatus, Message
from contacts.services.contacts import contact_profile_refresh, contact_upsert_from_x, contacts_messages_received
from contacts.services.conversations import conversation_open_for, conversations_inbound_added
from contacts.services.inbound import InboundDM, RecordedDM
from contacts.services.rollup import inbounds_counted


def dms_record(dms: Sequence[InboundDM]) -> list[RecordedDM | None]:
    """`dm_record` for many customers' DMs to the accounts (none an echo of an account's own), in the caller's
    transaction and in their order: for each, what was recorded, or None when it was stored already (a replay, X's
    duplicate delivery, or twice in `dms`)."""
    if not dms:
        return []
    account_ids = {dm.account.pk for dm in dms}
    stored = set(
        Message.objects.filter(
            account_id__in=account_ids, twitter_message_id__in={dm.x_event_id for dm in dms}
        ).values_list("account_id", "twitter_message_id")
    )
    fresh: list[InboundDM | None] = []
    for dm in dms:
        key = (dm.account.pk, dm.x_event_id)
        fresh.append(None if key in stored else dm)
        stored.add(key)
    # Locked as read, in key order, conversations before contacts, as one DM at a time takes them (its counters'
    # UPDATEs): the run's later writes take no new lock on a row that existed, so a run waits for another (or for a
    # single DM) on its first shared row instead of in a cycle (found by bench/load.py: runs that locked as they
    # wrote deadlocked 17 times in 5 minutes, and 324 times when they took contacts first; each deadlock cost a
    # rolled-back run). The lock is the one an UPDATE takes (no key): rows inserted meanwhile that refer to these
    # (a message, an activity row) do not wait for it.
    senders = {dm.profile.id for dm in fresh if dm is not None}
    conversations = {
        c.contact_id: c
        for c in Conversation.objects.filter(
            account_id__in=account_ids, contact__twitter_user_id__in=senders, status=ConversationStatus.OPEN
        )
        .select_for_update(of=("self",), no_key=True)
        .order_by("pk")
    }
    contacts = {
        (c.account_id, c.twitter_user_id): c
        for c in Contact.objects.filter(account_id__in=account_ids, twitter_user_id__in=senders)
        .select_for_update(no_key=True)
        .order_by("pk")
    }
    seen: set[Any] = set()  # contacts already made or refreshed by this run
    recorded: list[RecordedDM | None] = []
    for one in fresh:
        if one is None:
            recorded.append(None)
            continue
        dm = one
        contact, created = contacts.get((dm.account.pk, dm.profile.id)), False
        if contact is None:
            contact, created = contact_upsert_from_x(
                account=dm.account, profile=dm.profile, source=ContactSource.INBOUND_MESSAGE, at=dm.sent_at
            )
            contacts[(dm.account.pk, dm.profile.id)] = contact
        elif contact.pk not in seen:
            contact_profile_refresh(contact, dm.profile)
        seen.add(contact.pk)
        conversation = conversations.get(contact.pk)
        if conversation is None:
            conversation = conversations[contact.pk] = conversation_open_for(contact=contact, at=dm.sent_at)
        conversation.contact = contact  # the deciders read message.conversation.contact: not read again
        message = dm.message_in(conversation)
        recorded.append(
            RecordedDM(message=message, contact=contact, conversation=conversation, inbound=True, new_contact=created)
        )
    done = [r for r in recorded if r is not None]
    Message.objects.bulk_create([r.message for r in done])
    inbounds_counted([(r.message, r.contact.pk) for r in done])
    conversations_inbound_added([(r.conversation.pk, r.message.sent_at) for r in done])  # type: ignore[misc]
    contacts_messages_received([(r.contact.pk, r.message.sent_at) for r in done])  # type: ignore[misc]
    return recorded
