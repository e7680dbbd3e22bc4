"""PostgreSQL: numeric attribute conditions get expression indexes, but a bounded set of them (the contacts table is
shared by every merchant): at most MKTX_MAX_ATTRIBUTE_INDEXES keys, the most widely used, and a key no segment uses
any more loses its index (issue 11 point 6)."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client

from contacts.models import AttributeIndex, Contact, Segment
from contacts.services import attribute_indexes
from contacts.services.attribute_indexes import INDEX_PREFIX, RERUN, SyncReport, attribute_indexes_sync, index_name
from contacts.services.segments import (
    segment_contacts,
    segment_create,
    segment_delete,
    segment_indexes_ensure,
    segment_update,
)
from tests.factories import AccountFactory, ContactFactory, MerchantFactory

pytestmark = pytest.mark.django_db(transaction=True)
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="expression indexes are built on PostgreSQL only"
)


def built_indexes() -> dict[str, str]:
    """name -> definition of the attribute expression indexes on the contacts table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'contacts_contact' AND indexname LIKE %s",
            [INDEX_PREFIX.replace("_", r"\_") + "%"],
        )
        return dict(cursor.fetchall())


@pytest.fixture(autouse=True)
def _no_index_left_behind():
    """Indexes are DDL: the test database's truncation between tests does not remove them."""
    yield
    if connection.vendor == "postgresql":
        for name in built_indexes():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")


def ranges(*keys: str) -> list[dict]:
    return [{"field": f"attributes.{key}", "operator": "greaterThan", "value": 5} for key in keys]


@postgresql_only
def test_numeric_attribute_conditions_get_an_expression_index_that_the_planner_uses(merchant):
    account = AccountFactory.create(merchant=merchant)
    Contact.objects.bulk_create(
        ContactFactory.build(account=account, merchant=merchant, attributes={"purchaseCount": n}) for n in range(3000)
    )
    conditions = [
        {"field": "attributes.tier", "operator": "equals", "value": "gold"},  # text: served by the GIN index
        {"match": "any", "conditions": ranges("purchaseCount")},
    ]
    segment_create(merchant_id=merchant.pk, name="buyers", conditions=conditions)  # its index is built after commit

    again = segment_indexes_ensure(conditions=conditions)

    assert again == [index_name("purchaseCount")]  # one key compared as a number; building twice is harmless
    assert "mktx_attr_num(attributes, 'purchaseCount'::text)" in built_indexes()[again[0]]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact")
    narrow = [{"field": "attributes.purchaseCount", "operator": "between", "value": [2990, 2995]}]
    plan = segment_contacts(merchant_id=merchant.pk, conditions=narrow).explain()
    assert index_name("purchaseCount") in plan, plan
    row = AttributeIndex.objects.get(key="purchaseCount")
    assert (row.indexed, row.merchant_count, row.segment_count, row.use_count) == (True, 1, 1, 2)


@postgresql_only
def test_one_segment_with_a_hundred_numeric_conditions_adds_at_most_the_cap_of_indexes(api, settings):
    settings.MKTX_MAX_ATTRIBUTE_INDEXES = 5
    keys = [f"k{n:03d}" for n in range(100)]

    response = api.post("/api/v1/mkt-x/segments", {"name": "hundred", "conditions": ranges(*keys)}, format="json")

    assert response.status_code == 200, response.json()
    assert len(built_indexes()) == 5
    assert AttributeIndex.objects.count() == 100  # every key is listed in the admin; 95 wait without an index
    assert AttributeIndex.objects.filter(indexed=True).count() == 5


@postgresql_only
def test_the_keys_the_most_merchants_use_win_the_places(settings):
    settings.MKTX_MAX_ATTRIBUTE_INDEXES = 2
    greedy, *others = (MerchantFactory.create() for _ in range(4))
    segment_create(merchant_id=greedy.pk, name="many keys", conditions=ranges("a1", "a2", "a3", "a4"))
    segment_create(merchant_id=greedy.pk, name="many keys again", conditions=ranges("a1", "a2", "a3", "a4"))
    for merchant in others:
        segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))
    segment_create(merchant_id=others[0].pk, name="buyers", conditions=ranges("purchaseCount", "spent"))
    segment_create(merchant_id=others[1].pk, name="buyers", conditions=ranges("purchaseCount"))

    report = attribute_indexes_sync()

    assert set(built_indexes()) == {index_name("spent"), index_name("purchaseCount")}
    assert sorted(report.indexed) == ["purchaseCount", "spent"]
    assert report.waiting == ["a1", "a2", "a3", "a4"]  # one merchant's keys, however many of its segments use them
    spent = AttributeIndex.objects.get(key="spent")
    assert (spent.merchant_count, spent.segment_count) == (3, 4)


@postgresql_only
def test_a_key_that_no_segment_uses_any_more_loses_its_index_and_frees_its_place(merchant, settings):
    settings.MKTX_MAX_ATTRIBUTE_INDEXES = 1
    spenders = segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))
    buyers = segment_create(merchant_id=merchant.pk, name="buyers", conditions=ranges("purchaseCount"))
    assert set(built_indexes()) == {index_name("spent")}  # the place is taken; an equal newcomer does not evict

    segment_delete(segment=spenders)

    assert set(built_indexes()) == {index_name("purchaseCount")}
    assert list(AttributeIndex.objects.values_list("key", "indexed")) == [("purchaseCount", True)]

    segment_update(segment=buyers, changes={"conditions": [{"field": "tags", "operator": "exists"}]})

    assert built_indexes() == {}
    assert not AttributeIndex.objects.exists()


@postgresql_only
def test_the_command_drops_indexes_left_from_the_unbounded_version_and_reports_progress(merchant):
    segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("totalSpent"))
    with connection.cursor() as cursor:  # as the unbounded version left them: one per key ever seen
        for key in ("oldKey", "totalSpent"):
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {index_name(key)} "
                f"ON contacts_contact (merchant_id, mktx_attr_num(attributes, '{key}'))"
            )
    out = StringIO()

    call_command("attribute_indexes", stdout=out)

    assert set(built_indexes()) == {index_name("totalSpent")}
    output = out.getvalue()
    assert f"dropping {index_name('oldKey')}" in output
    assert "done: 1 indexed, 0 built, 1 dropped" in output


@postgresql_only
def test_an_index_left_invalid_by_a_failed_build_is_rebuilt(merchant):
    segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [index_name("spent")])

    report = attribute_indexes_sync()

    assert report.built == ["spent"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [index_name("spent")])
        assert cursor.fetchone() == (True,)


class OtherSession:
    """A second database session, as another task worker has: it holds or probes the sync's advisory lock."""

    def __init__(self) -> None:
        self.db = connections.create_connection(DEFAULT_DB_ALIAS)

    def query(self, sql: str) -> object:
        with self.db.cursor() as cursor:
            cursor.execute(sql, [attribute_indexes._LOCK])
            return cursor.fetchone()[0]

    def lock(self) -> None:
        self.query("SELECT pg_advisory_lock(%s)")

    def unlock(self) -> None:
        assert self.query("SELECT pg_advisory_unlock(%s)") is True

    def lock_is_free(self) -> bool:
        if not self.query("SELECT pg_try_advisory_lock(%s)"):
            return False
        self.unlock()
        return True


@pytest.fixture
def other_session():
    other = OtherSession()
    yield other
    other.db.close()  # ends the session, and so any lock it still holds


def rerun_requested() -> bool:
    return AttributeIndex.objects.filter(key=RERUN).exists()


@postgresql_only
def test_a_sync_while_another_holds_the_lock_returns_at_once_and_records_a_rerun_that_the_next_sync_makes(
    merchant, other_session
):
    other_session.lock()  # another worker's sync, building an index on a large table
    segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))  # its sync: busy too

    started = time.monotonic()
    report = attribute_indexes_sync()
    elapsed = time.monotonic() - started

    assert elapsed < 1
    assert (report.busy, report.passes, report.built, report.indexed) == (True, 0, [], [])
    assert built_indexes() == {}
    assert rerun_requested()
    assert not AttributeIndex.objects.get(key="spent").indexed  # noted by the save, not indexed yet

    other_session.unlock()
    report = attribute_indexes_sync()

    assert (report.busy, report.built) == (False, ["spent"])
    assert set(built_indexes()) == {index_name("spent")}
    assert not rerun_requested()
    assert other_session.lock_is_free()


@postgresql_only
def test_the_holder_passes_again_for_a_segment_saved_during_its_pass_before_it_releases_the_lock(
    merchant, monkeypatch, other_session
):
    segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))
    elsewhere: list[SyncReport] = []
    read_usage = attribute_indexes._usage

    def usage_then_a_save_on_another_worker():
        usage = read_usage()
        if not elsewhere:  # the first pass has read the segments: a merchant saves one now, elsewhere

            def other_worker() -> None:
                try:
                    segment_create(merchant_id=merchant.pk, name="buyers", conditions=ranges("purchaseCount"))
                    started = time.monotonic()
                    elsewhere.append(attribute_indexes_sync())
                    assert time.monotonic() - started < 1
                finally:
                    connection.close()  # the thread's own session

            worker = threading.Thread(target=other_worker)
            worker.start()
            worker.join(10)
            assert len(elsewhere) == 1
        return usage

    monkeypatch.setattr(attribute_indexes, "_usage", usage_then_a_save_on_another_worker)
    releases: list[None] = []
    release = attribute_indexes._unlock
    monkeypatch.setattr(attribute_indexes, "_unlock", lambda *args: releases.append(release(*args)))

    report = attribute_indexes_sync()

    assert len(releases) == 1  # both passes under the one lock: no other sync could start in between
    assert (elsewhere[0].busy, elsewhere[0].built) == (True, [])
    assert (report.passes, report.built, sorted(report.indexed)) == (2, ["purchaseCount"], ["purchaseCount", "spent"])
    assert set(built_indexes()) == {index_name("spent"), index_name("purchaseCount")}
    assert not rerun_requested()
    assert other_session.lock_is_free()


@postgresql_only
def test_a_rerun_recorded_just_as_the_holder_releases_is_made_by_the_sync_that_recorded_it(
    merchant, monkeypatch, other_session
):
    other_session.lock()
    segment_create(merchant_id=merchant.pk, name="spenders", conditions=ranges("spent"))
    record_rerun = attribute_indexes._request_rerun

    def record_as_the_holder_releases() -> None:
        record_rerun()
        other_session.unlock()  # the holder had looked for a request before this one, and found none

    monkeypatch.setattr(attribute_indexes, "_request_rerun", record_as_the_holder_releases)

    report = attribute_indexes_sync()

    assert (report.busy, report.passes, report.built) == (False, 1, ["spent"])
    assert not rerun_requested()
    assert other_session.lock_is_free()


@postgresql_only
def test_the_lock_is_released_when_a_build_fails(merchant, monkeypatch, other_session):
    def fail(key: str, name: str) -> None:
        raise RuntimeError("the build failed")

    Segment.objects.create(merchant=merchant, name="spenders", conditions=ranges("spent"))  # saved, not synced
    monkeypatch.setattr(attribute_indexes, "_build", fail)

    with pytest.raises(RuntimeError):
        attribute_indexes_sync()

    assert other_session.lock_is_free()
    monkeypatch.undo()
    assert attribute_indexes_sync().built == ["spent"]


def test_nothing_is_built_inside_a_transaction_or_off_postgresql():
    from django.db import transaction

    with transaction.atomic():
        assert segment_indexes_ensure(conditions=ranges("n")) == []
        assert attribute_indexes_sync().indexed == []


def test_the_admin_lists_the_keys_read_only(owner):
    AttributeIndex.objects.create(key="spent", indexed=True, index_name=index_name("spent"), segment_count=3)
    AttributeIndex.objects.create(key="rarelyUsed", segment_count=1)
    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)

    listing = staff.get("/admin/contacts/attributeindex/")

    assert listing.status_code == 200
    assert "spent" in listing.content.decode() and "rarelyUsed" in listing.content.decode()
    assert staff.get("/admin/contacts/attributeindex/add/").status_code == 403
