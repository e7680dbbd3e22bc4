"""The inbox's counts in the rollup (mktx/tallies), added by the services that write what they count, in the same
transaction; analytics reads them for the overview (analytics/rolled.py). Each metric counts what the matching
definition of analytics/definitions.py counts over the rows, by the same time:

- `contacts.arrived`: a contact, at its first interaction (before one, at its creation: it moves when it interacts);
- `contacts.new`: a contact's first interaction;
- `messages.inbound`: a customer's DM, when it was stored (the DMs sent are counted from the rows: a send's hot
  path has no statement to spare);
- `conversations.opened` (openings and reopenings) and `conversations.closed`, at the event;
- and beside them `ContactActivity`: a contact that DMed, per quarter-hour.

Erasing a contact takes its counts out with its rows (`contact_counts_retract`). `contacts_rollup_rebuild` counts
them again from the rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from contacts.models import (
    Contact,
    ContactActivity,
    ConversationEvent,
    ConversationEventKind,
    Message,
    MessageDirection,
)
from mktx.tallies.services import (
    QUARTER,
    Count,
    bucket_of,
    grouped_by_quarter,
    grouped_counts,
    tallies_add,
    tallies_rebuild,
)

ARRIVED = "contacts.arrived"
NEW = "contacts.new"
INBOUND = "messages.inbound"
OPENED = "conversations.opened"
CLOSED = "conversations.closed"
METRICS = (ARRIVED, NEW, INBOUND, OPENED, CLOSED)
OPENINGS = (ConversationEventKind.OPENED, ConversationEventKind.REOPENED)
ACTIVITY_BATCH = 5_000


def contact_created_count(contact: Contact) -> None:
    at = contact.first_interaction_at or contact.created_at
    counts: list[Count] = [(contact.account_id, ARRIVED, at, 1)]
    if contact.first_interaction_at:
        counts.append((contact.account_id, NEW, contact.first_interaction_at, 1))
    tallies_add(counts)


def _first_moves(rows: Iterable[tuple[Any, datetime | None, datetime]], at: datetime) -> list[Count]:
    """A contact's first interaction moving to `at`: out of its old bucket, into the new one."""
    counts: list[Count] = []
    for account_id, first, created in rows:
        counts += [(account_id, ARRIVED, first or created, -1), (account_id, ARRIVED, at, 1), (account_id, NEW, at, 1)]
        if first is not None:
            counts.append((account_id, NEW, first, -1))
    return counts


def first_interaction_locked(contact_id: Any, at: datetime) -> list[Count]:
    """In the transaction that moves a contact's first interaction to `at` (when it has none, or a later one): the
    row locked (as the UPDATE will: rows inserted meanwhile that refer to it do not wait), and the counts the move
    makes (none when it does not move)."""
    moving = (
        Contact.objects.select_for_update(no_key=True)
        .filter(Q(first_interaction_at__isnull=True) | Q(first_interaction_at__gt=at), pk=contact_id)
        .values_list("account_id", "first_interaction_at", "created_at")
    )
    return _first_moves(moving, at)


def first_interactions_locked(firsts: dict[Any, datetime]) -> list[Count]:
    """The same for many contacts at once, {contact id: its earliest time in the batch} (locked in key order)."""
    if not firsts:
        return []
    earliest = min(firsts.values())
    rows = (
        Contact.objects.select_for_update(no_key=True)
        .filter(Q(first_interaction_at__isnull=True) | Q(first_interaction_at__gt=earliest), pk__in=list(firsts))
        .order_by("pk")
        .values_list("pk", "account_id", "first_interaction_at", "created_at")
    )
    counts: list[Count] = []
    for pk, account_id, first, created in rows:
        at = firsts[pk]
        if first is None or first > at:
            counts += _first_moves([(account_id, first, created)], at)
    return counts


def inbound_counted(message: Message, contact_id: Any) -> None:
    """A customer's DM, stored: counted, and its contact active in the quarter-hour (once: a second DM of the
    quarter-hour meets the unique constraint and is ignored)."""
    inbounds_counted([(message, contact_id)])


def inbounds_counted(stored: Sequence[tuple[Message, Any]]) -> None:
    """`inbound_counted` for many DMs, (message, its contact's id) each: one INSERT for the counts, one for the
    activity."""
    tallies_add([(message.account_id, INBOUND, message.created_at, 1) for message, _ in stored])
    _activity_add({(m.account_id, contact_id, bucket_of(m.created_at)) for m, contact_id in stored})


def _activity_add(active: Iterable[tuple[Any, Any, datetime]], *, erasable: bool = False) -> int:
    """Activity rows (account, contact, quarter-hour) not there yet, inserted in one order, the unique key's, by every
    writer: two transactions inserting some of the same rows wait for each other on the first one they share, never
    in a cycle (found by bench/load.py: the first build, inserting in its own order, deadlocked with the drains'
    runs every minute of the load). `erasable`: the contacts are not locked (a build), so one may be erased
    meanwhile. Answers the rows given."""
    rows = sorted(active, key=lambda row: (row[1], row[2]))
    insert = _activity_insert_erasable if erasable else _activity_insert
    for first in range(0, len(rows), ACTIVITY_BATCH):
        insert(rows[first : first + ACTIVITY_BATCH])
    return len(rows)


def _activity_insert(rows: Sequence[tuple[Any, Any, datetime]]) -> None:
    ContactActivity.objects.bulk_create(
        [ContactActivity(account_id=a, contact_id=c, bucket=b) for a, c, b in rows], ignore_conflicts=True
    )


def _activity_insert_erasable(rows: Sequence[tuple[Any, Any, datetime]]) -> None:
    """In a transaction of its own, whose commit checks the foreign keys: the rows of a contact erased since its DMs
    were read are left out (its activity went with it)."""
    try:
        with transaction.atomic():
            _activity_insert(rows)
    except IntegrityError:
        alive = set(Contact.objects.filter(pk__in={c for _, c, _ in rows}).values_list("pk", flat=True))
        _activity_insert([row for row in rows if row[1] in alive])


def event_counted(event: ConversationEvent) -> None:
    metric = CLOSED if event.kind == ConversationEventKind.CLOSED else OPENED
    tallies_add([(event.account_id, metric, event.at, 1)])


def counts_of(
    contacts: QuerySet[Contact], messages: QuerySet[Message], events: QuerySet[ConversationEvent]
) -> list[Count]:
    """Every metric over these rows (the same queries rebuild and retract)."""
    arrived = contacts.annotate(_arrived=Coalesce("first_interaction_at", "created_at"))
    inbound = messages.filter(direction=MessageDirection.INBOUND)
    return [
        *grouped_counts(arrived, "_arrived", ARRIVED),
        *grouped_counts(contacts, "first_interaction_at", NEW),
        *grouped_counts(inbound, "created_at", INBOUND),
        *grouped_counts(events.filter(kind__in=OPENINGS), "at", OPENED),
        *grouped_counts(events.filter(kind=ConversationEventKind.CLOSED), "at", CLOSED),
    ]


def contact_counts_retract(contact: Contact) -> None:
    """Before a contact is erased: what it counted, taken out (its activity goes with it by cascade)."""
    counts = counts_of(
        Contact.objects.filter(pk=contact.pk),
        Message.objects.filter(conversation__contact_id=contact.pk),
        ConversationEvent.objects.filter(conversation__contact_id=contact.pk),
    )
    tallies_add((account_id, metric, at, -n) for account_id, metric, at, n in counts)


def rows_of(
    account_ids: Sequence[Any] | None,
) -> tuple[QuerySet[Contact], QuerySet[Message], QuerySet[ConversationEvent]]:
    """The rows counted: of these accounts, or of all."""
    contacts, messages, events = Contact.objects.all(), Message.objects.all(), ConversationEvent.objects.all()
    if account_ids is not None:
        contacts, messages = contacts.filter(account_id__in=account_ids), messages.filter(account_id__in=account_ids)
        events = events.filter(account_id__in=account_ids)
    return contacts, messages, events


def contacts_rollup_rebuild(account_ids: Sequence[Any] | None = None) -> int:
    """The inbox's counts and activity built again from the rows (of these accounts, or of all). Answers the
    rollup rows written."""
    contacts, messages, events = rows_of(account_ids)
    written = tallies_rebuild(METRICS, account_ids, lambda: counts_of(contacts, messages, events))
    return written + _activity_rebuild(account_ids, messages.filter(direction=MessageDirection.INBOUND))


def _activity_rebuild(account_ids: Sequence[Any] | None, inbound: QuerySet[Message]) -> int:
    """The activity made to match the DMs: the rows missing added, the rows of no DM removed, the rows right left
    alone; each batch its own statement, so that the drains writing activity meanwhile never wait long on it (one
    transaction deleting and writing every row again made them wait for minutes, and deadlocked with them). The rows
    are read before the DMs: a row written meanwhile, in one transaction with its DM, is then seen with its DM or not
    at all, so no row right is removed. Answers the rows removed and the rows added (or found added meanwhile)."""
    activity = ContactActivity.objects.all()
    if account_ids is not None:
        activity = activity.filter(account_id__in=account_ids)
    had = {(c, b): pk for pk, c, b in activity.values_list("pk", "contact_id", "bucket").iterator(chunk_size=10_000)}
    seen = grouped_by_quarter(inbound, "created_at", ["account_id", "conversation__contact_id"])
    wanted = {(c, b) for _, c, b in seen}
    stale = sorted(pk for key, pk in had.items() if key not in wanted)
    dmed = Message.objects.filter(
        direction=MessageDirection.INBOUND,
        conversation__contact_id=OuterRef("contact_id"),
        created_at__gte=OuterRef("bucket"),
        created_at__lt=OuterRef("bucket") + QUARTER,
    )
    removed = 0
    for first in range(0, len(stale), ACTIVITY_BATCH):
        # looked at again as it goes: a DM stored since they were read keeps its row
        batch = ContactActivity.objects.filter(pk__in=stale[first : first + ACTIVITY_BATCH])
        removed += batch.exclude(Exists(dmed)).delete()[0]
    return removed + _activity_add(((a, c, b) for a, c, b in seen if (c, b) not in had), erasable=True)
