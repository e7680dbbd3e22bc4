"""PostgreSQL: a bounded set of expression indexes for the attribute keys segments compare as numbers.

A range on `mktx_attr_num(attributes, key)` (contacts migration 0006) over a million contacts wants an index on that
expression, but the contacts table is written by every merchant: an index per key that any segment names would let
one merchant add a hundred indexes that every tenant's writes then maintain. So at most
`MKTX_MAX_ATTRIBUTE_INDEXES` keys are indexed, those that the most merchants (then segments) use; the others are
compared without an index, and a key that no saved segment uses any more loses its index.

`attribute_indexes_sync` is the one place that decides: it recounts the keys of every saved segment, records them
in `AttributeIndex` (visible in the admin), drops the indexes that fell out of the set and builds the ones that
came in, CONCURRENTLY (no table lock, hence never inside a transaction). It is idempotent; the segment services
queue it after a save or delete, and `manage.py attribute_indexes` runs it.

One sync runs at a time (a session advisory lock), and a sync never waits for it: a build on a large table takes
minutes, and a queued sync waiting on the lock would hold one of the few task workers (the campaign sender, the
inbound drain) for as long. A sync that finds the lock taken records a rerun (the `RERUN` row of `AttributeIndex`,
which no attribute key can spell) and returns at once; the holder takes that row before each pass, so a pass started
after a request reads the segments as they were then, and it passes again while one was recorded during its pass.
A request made just as the holder releases is not lost either: the requester tries the lock again after recording,
and whoever releases looks for a request afterwards and, finding one, takes the lock again (or leaves it to the sync
that now holds it).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.utils import timezone

from contacts.models import AttributeIndex, Segment
from contacts.segments import numeric_attribute_keys
from contacts.validation import ATTRIBUTE_KEY

INDEX_PREFIX = "contact_attr_num_"
_LOCK = 0x6D6B7478_0006  # advisory lock key: one sync at a time, whichever process runs it
RERUN = "~rerun requested"  # the AttributeIndex row of a sync that found the lock taken (not an ATTRIBUTE_KEY)

Progress = Callable[[str], None]
logger = logging.getLogger("mktx.contacts")


@dataclass
class SyncReport:
    indexed: list[str] = field(default_factory=list)  # keys with a valid index after the sync
    built: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # index names
    waiting: list[str] = field(default_factory=list)  # keys in use beyond the cap: not indexed
    busy: bool = False  # another sync held the lock: a rerun was recorded for it, nothing was done here
    passes: int = 0  # passes made under the lock (more than one when reruns were requested meanwhile)


def index_name(key: str) -> str:
    """A stable name per key (the same the unbounded version used, so its indexes are adopted, not rebuilt)."""
    return INDEX_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:16]  # noqa: S324 - a name, not a secret


def available() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _usage() -> tuple[Counter[str], Counter[str]]:
    """(merchants, segments) per key that a saved segment compares as a number."""
    merchants: dict[str, set[Any]] = {}
    segments: Counter[str] = Counter()
    rows = Segment.objects.values_list("merchant_id", "conditions").iterator(chunk_size=500)
    for merchant_id, conditions in rows:
        for key in numeric_attribute_keys(conditions):
            if ATTRIBUTE_KEY.fullmatch(key):  # the key is written into DDL
                merchants.setdefault(key, set()).add(merchant_id)
                segments[key] += 1
    return Counter({key: len(ids) for key, ids in merchants.items()}), segments


def _existing_indexes() -> dict[str, bool]:
    """Our expression indexes on the contacts table, name -> valid (a failed CONCURRENTLY build leaves one invalid)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'contacts_contact'::regclass AND c.relname LIKE %s""",
            [INDEX_PREFIX.replace("_", r"\_") + "%"],
        )
        return dict(cursor.fetchall())


def _drop(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {connection.ops.quote_name(name)}")


def _build(key: str, name: str) -> None:
    if not ATTRIBUTE_KEY.fullmatch(key):  # checked by the caller too: the key is a literal in DDL
        raise ValueError(f"not an attribute key: {key!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {connection.ops.quote_name(name)} "
            f"ON contacts_contact (merchant_id, mktx_attr_num(attributes, '{key}'))"
        )


def _record(merchants: Counter[str], segments: Counter[str], chosen: set[str]) -> None:
    AttributeIndex.objects.exclude(key__in=[*segments, RERUN]).delete()
    known = set(AttributeIndex.objects.values_list("key", flat=True))
    AttributeIndex.objects.bulk_create(
        [AttributeIndex(key=key) for key in segments if key not in known], ignore_conflicts=True
    )
    for key, count in segments.items():
        values: dict[str, Any] = {"merchant_count": merchants[key], "segment_count": count}
        if key not in chosen:
            values.update(indexed=False, index_name="", indexed_at=None)
        AttributeIndex.objects.filter(key=key).update(**values)


def _choose(merchants: Counter[str], segments: Counter[str], cap: int) -> list[str]:
    """The keys to index: the most merchants, then the most segments; an indexed key wins a tie (no churn)."""
    indexed = set(AttributeIndex.objects.filter(indexed=True).values_list("key", flat=True))
    ranked = sorted(segments, key=lambda key: (-merchants[key], -segments[key], key not in indexed, key))
    return ranked[:cap]


def _try_lock(db: BaseDatabaseWrapper) -> Any | None:
    """Take the sync lock without waiting; the session (driver connection) that holds it, or None when it is taken."""
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK])
        row = cursor.fetchone()
    return db.connection if row and row[0] else None


def _unlock(db: BaseDatabaseWrapper, session: Any) -> None:
    """Release the lock on the session that took it. A session-level lock belongs to its connection: if Django has
    replaced that connection meanwhile, the lock ended with the old session; if releasing fails, closing the
    connection ends the session and so releases the lock."""
    if db.connection is not session:
        return
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK])
    except DatabaseError:
        logger.warning("could not release the attribute index sync lock: closing the connection", exc_info=True)
        db.close()


def _request_rerun() -> None:
    AttributeIndex.objects.bulk_create([AttributeIndex(key=RERUN)], ignore_conflicts=True)


def _take_rerun() -> bool:
    return AttributeIndex.objects.filter(key=RERUN).delete()[0] > 0


def _rerun_requested() -> bool:
    return AttributeIndex.objects.filter(key=RERUN).exists()


def _sync_once(report: SyncReport, cap: int, say: Progress) -> None:
    """One pass, under the lock: recount the keys of the saved segments, then drop and build to match."""
    merchants, segments = _usage()
    chosen = _choose(merchants, segments, cap)
    _record(merchants, segments, set(chosen))
    wanted = {index_name(key): key for key in chosen}
    existing = _existing_indexes()
    report.indexed, report.waiting = [], []  # as of the last pass; built and dropped add up over the passes
    report.passes += 1
    say(f"{len(segments)} keys compared as numbers by saved segments; indexing at most {cap}")
    for name in sorted(set(existing) - set(wanted)):
        say(f"dropping {name} (its key is no longer among the indexed)")
        _drop(name)
        report.dropped.append(name)
    for name, key in wanted.items():
        if existing.get(name) is False:
            say(f"rebuilding {name} for {key!r} (left invalid by a failed build)")
            _drop(name)
        if not existing.get(name):
            say(f"building {name} for {key!r} ({merchants[key]} merchants, {segments[key]} segments)")
            _build(key, name)
            report.built.append(key)
        AttributeIndex.objects.filter(key=key, indexed=False).update(
            indexed=True, index_name=name, indexed_at=timezone.now()
        )
        report.indexed.append(key)
    report.waiting = sorted(set(segments) - set(chosen))
    if report.waiting:
        say(f"not indexed (beyond the cap of {cap}): {', '.join(report.waiting)}")


def attribute_indexes_sync(*, progress: Progress | None = None) -> SyncReport:
    """Bring the expression indexes to the capped set the saved segments call for (see the module docstring).
    A no-op off PostgreSQL or inside a transaction (CONCURRENTLY cannot run there). Never waits for another sync:
    when one holds the lock, records a rerun for it and returns at once with `busy` set."""
    report = SyncReport()
    if not available():
        return report
    say = progress or (lambda line: None)
    cap = settings.MKTX_MAX_ATTRIBUTE_INDEXES
    db = connections[DEFAULT_DB_ALIAS]  # `connection`, and the ORM's: the lock is taken and released on it
    while True:
        session = _try_lock(db)
        if session is None:
            _request_rerun()
            session = _try_lock(db)  # the holder may have released before it could see the request
            if session is None:
                if report.passes:  # a later sync took the lock after the request: it makes the pass
                    break
                report.busy = True
                say("another sync is running: it will pass again for this one")
                return report
        try:
            while True:
                _take_rerun()  # before the pass reads the segments: a request from now on is seen after it
                _sync_once(report, cap, say)
                if not _rerun_requested():
                    break
                say("a rerun was requested during the pass: passing again")
        finally:
            _unlock(db, session)
        if not _rerun_requested():  # one recorded between the last look and the release: take the lock again
            break
    say(f"done: {len(report.indexed)} indexed, {len(report.built)} built, {len(report.dropped)} dropped")
    return report


def attribute_indexes_note_use(*, keys: Iterable[str]) -> None:
    """Count a segment save that compares these keys as numbers (shown in the admin as uses and last use)."""
    keys = [key for key in keys if ATTRIBUTE_KEY.fullmatch(key)]
    if not keys:
        return
    AttributeIndex.objects.bulk_create([AttributeIndex(key=key) for key in keys], ignore_conflicts=True)
    AttributeIndex.objects.filter(key__in=keys).update(use_count=F("use_count") + 1, last_used_at=timezone.now())
