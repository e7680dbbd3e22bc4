"""Contacts: upsert from X, tags, attributes, updates, erasure and export."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from contacts.erasure import ErasedContact, erasure_hooks_run
from contacts.hooks import contact_created_fire, tags_added_fire
from contacts.models import Contact, ContactSource, ContactTag, Conversation, Tag
from contacts.services.rollup import (
    contact_counts_retract,
    contact_created_count,
    first_interaction_locked,
    first_interactions_locked,
)
from contacts.validation import merge_attributes, normalize_tag, normalize_tags, validate_attribute_changes
from mktx.accounts.models import Account
from mktx.api.errors import InvalidInput, NotFoundError
from mktx.bulk import values_update
from mktx.tallies.services import tallies_add

logger = logging.getLogger("mktx.contacts")


@dataclass(frozen=True)
class XProfile:
    """An X user as a webhook payload describes them."""

    id: str
    username: str = ""
    name: str = ""
    profile_image_url: str = ""


def contact_upsert_from_x(
    *, account: Account, profile: XProfile, source: str, at: datetime | None = None
) -> tuple[Contact, bool]:
    """The account's contact for this X user, created if new (its first interaction `at`, the event's time, when
    given); its X profile refreshed. (contact, created)"""
    contact = Contact.objects.filter(account=account, twitter_user_id=profile.id).first()
    if contact is None:
        with transaction.atomic():  # the contact and what its listeners do, together
            try:
                with transaction.atomic():
                    contact = Contact.objects.create(
                        merchant_id=account.merchant_id,
                        account=account,
                        twitter_user_id=profile.id,
                        username=profile.username[:50],
                        display_name=profile.name[:100],
                        profile_image_url=profile.profile_image_url[:500],
                        source=source,
                        first_interaction_at=at,
                        last_interaction_at=at,
                    )
                    contact_created_count(contact)
            except IntegrityError:  # created a moment ago by a concurrent event
                contact = None
            if contact is not None:
                contact_created_fire(contact=contact)
                return contact, True
        contact = Contact.objects.get(account=account, twitter_user_id=profile.id)
    contact_profile_refresh(contact, profile)
    return contact, False


def contact_profile_refresh(contact: Contact, profile: XProfile) -> None:
    """The contact's X profile as X describes it now (a display name staff set is kept): one UPDATE when it
    changed, none otherwise."""
    changes: dict[str, Any] = {}
    if profile.username and contact.username != profile.username:
        changes["username"] = profile.username[:50]
    if profile.name and not contact.display_name_overridden and contact.display_name != profile.name:
        changes["display_name"] = profile.name[:100]
    if profile.profile_image_url and contact.profile_image_url != profile.profile_image_url:
        changes["profile_image_url"] = profile.profile_image_url[:500]
    if changes:
        Contact.objects.filter(pk=contact.pk).update(**changes, updated_at=timezone.now())
        for name, value in changes.items():
            setattr(contact, name, value)


def contact_interaction_record(*, contact_id: Any, at: datetime, **counters: int) -> None:
    """Move the last interaction to include `at` and add to counters (`messages_received=1`...) in one statement
    (the hot path of every send), which also tells whether `at` comes before the first interaction; when it does
    (an event X delivered late; a contact made without one), the first interaction moves, and the contact with it
    in the rollup, in a transaction of its own."""
    opts = Contact._meta
    qn = connection.ops.quote_name

    def field(name: str) -> Field[Any, Any]:
        found = opts.get_field(name)
        assert isinstance(found, Field)
        return found

    def column(name: str) -> str:
        return qn(field(name).column)

    def value(name: str, raw: Any) -> Any:
        return field(name).get_db_prep_value(raw, connection)

    first, last = column("first_interaction_at"), column("last_interaction_at")
    sets = [f"{last} = CASE WHEN {last} IS NULL OR {last} < %s THEN %s ELSE {last} END", f"{column('updated_at')} = %s"]
    params = [value("last_interaction_at", at)] * 2 + [value("updated_at", timezone.now())]
    for name, n in counters.items():
        sets.append(f"{column(name)} = {column(name)} + %s")
        params.append(int(n))
    sql = (
        f"UPDATE {qn(opts.db_table)} SET {', '.join(sets)} WHERE {qn(opts.pk.column)} = %s "  # noqa: S608
        f"RETURNING CASE WHEN {first} IS NULL OR {first} > %s THEN 1 ELSE 0 END"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, opts.pk.get_db_prep_value(contact_id, connection), params[0]])
        row = cursor.fetchone()
    if row and row[0]:
        first_interaction_move(contact_id=contact_id, at=at)


@transaction.atomic
def first_interaction_move(*, contact_id: Any, at: datetime) -> None:
    """The contact's first interaction moved to `at` when it has none or a later one (checked again under the
    row's lock), with its counts in the rollup."""
    moves = first_interaction_locked(contact_id, at)
    if moves:
        Contact.objects.filter(pk=contact_id).update(first_interaction_at=at)
        tallies_add(moves)


def contacts_messages_sent(sent: list[tuple[Any, datetime]]) -> None:
    """`contact_interaction_record(messages_sent=1)` for many sends at once, (contact id, when) each, in one
    statement: a contact that got several counts each, its interaction times stretched to the earliest and latest."""
    _interactions_add("messages_sent", sent)


def contacts_messages_received(received: list[tuple[Any, datetime]]) -> None:
    """`contact_interaction_record(messages_received=1)` for many inbound DMs at once, as `contacts_messages_sent`."""
    _interactions_add("messages_received", received)


@transaction.atomic
def _interactions_add(counter: str, events: list[tuple[Any, datetime]]) -> None:
    per_contact: dict[Any, tuple[int, datetime, datetime]] = {}
    for contact_id, at in events:
        n, first, last = per_contact.get(contact_id, (0, at, at))
        per_contact[contact_id] = (n + 1, min(first, at), max(last, at))
    moves = first_interactions_locked({pk: first for pk, (_, first, _) in per_contact.items()})
    when, count = Contact._meta.get_field("last_interaction_at"), Contact._meta.get_field(counter)
    assert isinstance(count, Field)
    values_update(
        Contact,
        [("k", Contact._meta.pk), ("n", count), ("first", when), ("last", when)],
        [(pk, n, first, last) for pk, (n, first, last) in sorted(per_contact.items(), key=lambda item: str(item[0]))],
        assignments=(
            f"{counter} = t.{counter} + v.n, "
            "first_interaction_at = CASE WHEN t.first_interaction_at IS NULL OR t.first_interaction_at > v.first "
            "THEN v.first ELSE t.first_interaction_at END, "
            "last_interaction_at = CASE WHEN t.last_interaction_at IS NULL OR t.last_interaction_at < v.last "
            "THEN v.last ELSE t.last_interaction_at END, "
            "updated_at = v.last"
        ),
    )
    tallies_add(moves)


def contact_follow_set(*, account: Account, profile: XProfile, following: bool, at: datetime) -> Contact | None:
    """The X user follows (or no longer follows) the account. The contact when it went from not following to
    following (a new follower); None for an unfollow, or a follow X told again."""
    if following:
        contact, _ = contact_upsert_from_x(account=account, profile=profile, source=ContactSource.NEW_FOLLOWER, at=at)
        started = Contact.objects.filter(pk=contact.pk, following=False).update(following=True)
        contact_interaction_record(contact_id=contact.pk, at=at)
        contact.following = True
        return contact if started else None
    Contact.objects.filter(account=account, twitter_user_id=profile.id).update(following=False)
    return None


@transaction.atomic
def contact_tags_add(*, contact: Contact, tags: Any) -> list[str]:
    """Add tags (made for the merchant if new); the contact's tag names. Every path that tags a contact comes here:
    the tags it did not have yet are told to the `tags_added` listener (contacts/hooks.py)."""
    names = normalize_tags(tags)
    added: list[str] = []
    for name in names:
        tag, _ = Tag.objects.get_or_create(merchant_id=contact.merchant_id, name=name)
        _, created = ContactTag.objects.get_or_create(contact=contact, tag=tag)
        if created:
            added.append(name)
    all_names = _sync_tag_names(contact)
    tags_added_fire(contact=contact, tags=added)
    return all_names


@transaction.atomic
def contacts_tags_add(*, contacts: list[Contact], tags: Any) -> dict[Any, list[str]]:
    """`contact_tags_add` for many contacts of one merchant in a few statements (a flow's `add_tag` for a batch of
    executions): each contact's tag names after, and the tags it did not have told to the `tags_added` listener."""
    names = normalize_tags(tags)
    if not contacts or not names:
        return {contact.pk: list(contact.tag_names) for contact in contacts}
    merchant_id = contacts[0].merchant_id
    if any(contact.merchant_id != merchant_id for contact in contacts):
        raise ValueError("contacts_tags_add tags the contacts of one merchant at a time")
    rows = {name: Tag.objects.get_or_create(merchant_id=merchant_id, name=name)[0] for name in names}
    ids = [contact.pk for contact in contacts]
    had = set(ContactTag.objects.filter(contact_id__in=ids, tag__in=rows.values()).values_list("contact_id", "tag_id"))
    new = [
        ContactTag(contact_id=contact.pk, tag=tag)
        for contact in contacts
        for tag in rows.values()
        if (contact.pk, tag.pk) not in had
    ]
    ContactTag.objects.bulk_create(new, ignore_conflicts=True)
    added: dict[Any, list[str]] = {}
    for link in new:
        added.setdefault(link.contact_id, []).append(link.tag.name)
    current: dict[Any, list[str]] = {contact_id: [] for contact_id in added}
    for contact_id, name in (
        ContactTag.objects.filter(contact_id__in=list(added))
        .order_by("tag__name")
        .values_list("contact_id", "tag__name")
    ):
        current[contact_id].append(name)
    values_update(
        Contact,
        [("k", Contact._meta.pk), ("names", Contact._meta.get_field("tag_names"))],
        list(current.items()),
        assignments="tag_names = v.names",
    )
    for contact in contacts:
        if contact.pk in added:
            contact.tag_names = current[contact.pk]
            tags_added_fire(contact=contact, tags=added[contact.pk])
    return {contact.pk: list(contact.tag_names) for contact in contacts}


@transaction.atomic
def contact_tag_remove(*, contact: Contact, tag_name: str) -> list[str]:
    name = normalize_tag(tag_name, "tagName")
    deleted, _ = ContactTag.objects.filter(contact=contact, tag__name=name).delete()
    if not deleted:
        raise NotFoundError(f"The contact has no tag {name!r}", details={"field": "tagName"})
    return _sync_tag_names(contact)


def contact_tag_names(contact: Contact) -> list[str]:
    return list(contact.contact_tags.order_by("tag__name").values_list("tag__name", flat=True))


def _sync_tag_names(contact: Contact) -> list[str]:
    """The contact's tag names, copied onto the contact row (what segments filter on)."""
    names = contact_tag_names(contact)
    Contact.objects.filter(pk=contact.pk).update(tag_names=names)
    contact.tag_names = names
    return names


@transaction.atomic
def contact_attributes_merge(*, contact: Contact, changes: Any) -> Contact:
    """Merge `changes` into the attributes; a None value deletes its key."""
    checked = validate_attribute_changes(changes)
    locked = Contact.objects.select_for_update().get(pk=contact.pk)
    locked.attributes = merge_attributes(locked.attributes, checked)
    locked.save(update_fields=["attributes", "updated_at"])
    contact.attributes = locked.attributes
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, changes: dict[str, Any]) -> Contact:
    """`display_name` (which then stops following X's name) and `attributes` (merged)."""
    if "display_name" in changes:
        name = str(changes["display_name"]).strip()
        if not name:
            raise InvalidInput("displayName", "must not be blank")
        Contact.objects.filter(pk=contact.pk).update(display_name=name, display_name_overridden=True)
        contact.display_name, contact.display_name_overridden = name, True
    if "attributes" in changes:
        contact_attributes_merge(contact=contact, changes=changes["attributes"])
    return contact


@transaction.atomic
def contact_erase(*, contact: Contact) -> None:
    """GDPR erasure: the contact, its tags, conversations, messages and consent records, and what other apps keep
    about it through their erasure hooks (contacts/erasure.py: the raw webhook events). Campaign deliveries are
    anonymised by the campaign app, not dropped. Every back-office path that deletes a contact comes here."""
    erased = ErasedContact(
        contact_id=contact.pk,
        merchant_id=contact.merchant_id,
        account_x_user_id=contact.account.twitter_user_id,
        x_user_id=contact.twitter_user_id,
    )
    # the contact and its conversations locked first: a DM, an event or a move of its first interaction committing
    # meanwhile waits (on the rows or their foreign keys), so what is taken out of the rollup is what is deleted
    Contact.objects.select_for_update().filter(pk=contact.pk).values_list("pk").first()
    list(Conversation.objects.select_for_update().filter(contact_id=contact.pk).values_list("pk"))
    contact_counts_retract(contact)
    contact.delete()
    done = erasure_hooks_run(erased)
    logger.info("contact %s erased; %s", erased.contact_id, done)
