"""Segments: saved contact queries with a counted size whose freshness is exposed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from contacts.models import Contact, Segment
from contacts.segment_users import segment_users
from contacts.segments import compile_conditions, numeric_attribute_keys
from contacts.selectors import contacts_of
from contacts.services import attribute_indexes
from mktx.api.errors import InvalidInput, ResourceInUse
from mktx.queue import task_enqueue

COUNT_FRESH_FOR = timedelta(seconds=60)


def segment_contacts(*, merchant_id: uuid.UUID, conditions: Any) -> QuerySet[Contact]:
    """The merchant's contacts matching the conditions: one SQL query, whatever the nesting."""
    return contacts_of(merchant_id).filter(compile_conditions(merchant_id=merchant_id, conditions=conditions))


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "must not be blank")
    return name.strip()[:200]


def segment_count(segment: Segment) -> Segment:
    count = segment_contacts(merchant_id=segment.merchant_id, conditions=segment.conditions).count()
    now = timezone.now()
    Segment.objects.filter(pk=segment.pk).update(contact_count=count, counted_at=now)
    segment.contact_count, segment.counted_at = count, now
    return segment


def segment_count_fresh(segment: Segment) -> Segment:
    """Recount when the stored count is older than COUNT_FRESH_FOR (the API shows when it was counted)."""
    if segment.counted_at is None or timezone.now() - segment.counted_at > COUNT_FRESH_FOR:
        return segment_count(segment)
    return segment


def segment_indexes_ensure(*, conditions: Any) -> list[str]:
    """PostgreSQL: note the use of the attributes these conditions compare as numbers and bring the bounded set of
    expression indexes up to date (contacts.services.attribute_indexes); the names of the indexes these keys have.
    Builds CONCURRENTLY (no table lock), so does nothing inside a transaction."""
    if not attribute_indexes.available():
        return []
    keys = numeric_attribute_keys(conditions)
    attribute_indexes.attribute_indexes_note_use(keys=keys)
    indexed = set(attribute_indexes.attribute_indexes_sync().indexed)
    return [attribute_indexes.index_name(key) for key in sorted(keys) if key in indexed]


def _indexes_later(conditions: Any, *, before: Any = ()) -> None:
    """After commit, on PostgreSQL: sync the indexes for the keys of the saved conditions, or, when they compare
    none as numbers but the conditions `before` did, sync anyway: such a key may have lost its last segment."""
    if connection.vendor != "postgresql":
        return
    args: tuple[Any, ...]
    if numeric_attribute_keys(conditions):
        task, args = "contacts.tasks.ensure_segment_indexes", (conditions,)
    elif numeric_attribute_keys(before):
        task, args = "contacts.tasks.sync_attribute_indexes", ()
    else:
        return

    # not queued (broker down): the next segment save, or `manage.py attribute_indexes`, builds them
    transaction.on_commit(lambda: task_enqueue(task, *args, task_name="segment-indexes"))


@transaction.atomic  # with its count: a segment whose count fails is not left saved
def segment_create(*, merchant_id: uuid.UUID, name: Any, conditions: Any) -> Segment:
    compile_conditions(merchant_id=merchant_id, conditions=conditions)
    segment = Segment.objects.create(merchant_id=merchant_id, name=_clean_name(name), conditions=conditions)
    _indexes_later(conditions)
    return segment_count(segment)


@transaction.atomic
def segment_update(*, segment: Segment, changes: dict[str, Any]) -> Segment:
    if "conditions" in changes:
        compile_conditions(merchant_id=segment.merchant_id, conditions=changes["conditions"])
        before, segment.conditions = segment.conditions, changes["conditions"]
        _indexes_later(segment.conditions, before=before)
    if "name" in changes:
        segment.name = _clean_name(changes["name"])
    segment.save(update_fields=["name", "conditions", "updated_at"])
    return segment_count(segment)


def segment_delete(*, segment: Segment) -> None:
    """Refused while something sends to it (a scheduled, running or paused campaign: contacts/segment_users.py)."""
    in_use = segment_users(segment)
    if in_use:
        raise ResourceInUse("The segment is used by active campaigns", details=in_use)
    segment.delete()
    _indexes_later([], before=segment.conditions)
