"""A drain's runs of customers' DMs (webhooks_app/services.py, `_process_claimed`; contacts/services/inbound_batch.py):
recorded in one statement per step and answered with the deciders' reads prefetched, they leave everything as the
same DMs processed one at a time do, in a number of statements that does not grow with the DMs; a run that fails is
rolled back whole and its events processed one by one. Who answers a DM in a run: tests/test_inbound_arbiter.py,
each test both ways."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.models import Execution, ExecutionStatus
from contacts.models import Contact, ContactActivity, Conversation, Message
from contacts.services.contacts import XProfile
from contacts.services.conversations import conversation_close
from contacts.services.inbound import InboundDM
from contacts.services.inbound_batch import dms_record
from mktx.accounts.models import Account
from mktx.memo import batch_memo
from mktx.tallies.models import Tally
from tests.factories import AccountFactory
from tests.lock_helpers import row_locked
from webhooks_app import services
from webhooks_app.events import DirectMessageEvent
from webhooks_app.models import InboundEvent
from webhooks_app.parser import split_payload

pytestmark = pytest.mark.django_db

SHOP_A, SHOP_B = "4100000001", "4100000002"
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def _dm(event_id: int, shop: str, sender: str, text: str, at: datetime, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"text": text, "entities": extra.get("entities") or {}}
    return {
        "for_user_id": shop,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": str(event_id),
                "created_timestamp": str(int(at.timestamp() * 1000)),
                "message_create": {"target": {"recipient_id": shop}, "sender_id": sender, "message_data": data},
            }
        ],
        "users": {
            sender: {"id": sender, "name": extra.get("name", f"Customer {sender}"), "screen_name": f"c_{sender}"},
            shop: {"id": shop, "name": "Shop", "screen_name": f"shop_{shop}"},
        },
    }


def _store(*payloads: dict[str, Any]) -> list[int]:
    before = set(InboundEvent.objects.values_list("pk", flat=True))
    for payload in payloads:
        services._insert_new(split_payload(payload), None)
    return sorted(set(InboundEvent.objects.values_list("pk", flat=True)) - before)


def _one_at_a_time(ids: list[int]) -> None:
    assert [services.inbound_event_process(event_id=pk) for pk in ids] == ["processed"] * len(ids)


LINK = {"urls": [{"url": "https://t.co/abc", "expanded_url": "https://shop.example/sale", "indices": [9, 25]}]}


def _history(shop: str, base: int) -> None:
    """Two customers who DMed two days ago, one at a time; the second's conversation since closed."""
    earlier = NOW - timedelta(days=2)
    _one_at_a_time(_store(_dm(base + 1, shop, "501", "hello", earlier), _dm(base + 2, shop, "502", "hi", earlier)))
    conversation_close(
        conversation=Conversation.objects.get(account__twitter_user_id=shop, contact__twitter_user_id="502")
    )


def _today(shop: str, base: int) -> list[dict[str, Any]]:
    """A run: known customers (one with an open conversation, one whose conversation was closed), a new one twice,
    a link, a changed display name."""
    at = NOW - timedelta(minutes=5)
    return [
        _dm(base + 10, shop, "501", "where is my order?", at),
        _dm(base + 11, shop, "503", "first time here", at + timedelta(seconds=1)),
        _dm(base + 12, shop, "501", "see this https://t.co/abc", at + timedelta(seconds=2), entities=LINK),
        _dm(base + 13, shop, "502", "back again", at + timedelta(seconds=3), name="Renamed Customer"),
        _dm(base + 14, shop, "503", "and again", at + timedelta(seconds=4)),
    ]


def _snapshot(shop: str) -> dict[str, Any]:
    account = Account.objects.get(twitter_user_id=shop)
    contacts = {
        c.twitter_user_id: (
            c.username,
            c.display_name,
            c.source,
            c.messages_received,
            c.conversation_count,
            c.first_interaction_at,
            c.last_interaction_at,
        )
        for c in Contact.objects.filter(account=account)
    }
    conversations = sorted(
        (c.contact.twitter_user_id, c.status, c.message_count, c.started_at, c.last_message_at, c.awaiting_reply_since)
        for c in Conversation.objects.filter(account=account).select_related("contact")
    )
    messages = sorted(
        (
            m.conversation.contact.twitter_user_id,
            m.conversation.status,
            m.content,
            m.type,
            m.metadata,
            m.status,
            m.sent_at,
            m.created_at,
        )
        for m in Message.objects.filter(account=account).select_related("conversation__contact")
    )
    tallies: dict[tuple[str, datetime], int] = {}
    for metric, bucket, n in Tally.objects.filter(account=account).values_list("metric", "bucket", "n"):
        tallies[(metric, bucket)] = tallies.get((metric, bucket), 0) + n
    activity = sorted((a.contact.twitter_user_id, a.bucket) for a in ContactActivity.objects.filter(account=account))
    return {
        "contacts": contacts,
        "conversations": conversations,
        "messages": messages,
        "tallies": tallies,
        "activity": activity,
    }


def test_a_run_leaves_everything_as_the_same_dms_one_at_a_time_do(merchant, settings):
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_B, username="shop_b")
    with time_machine.travel(NOW - timedelta(days=2), tick=False) as clock:
        _history(SHOP_A, 1_000)
        _history(SHOP_B, 2_000)
        clock.move_to(NOW)
        _store(*_today(SHOP_A, 1_000))
        assert services.inbound_events_drain() == {"processed": 5}  # one run
        _one_at_a_time(_store(*_today(SHOP_B, 2_000)))
    a, b = _snapshot(SHOP_A), _snapshot(SHOP_B)
    assert a == b
    # and what that is
    assert a["contacts"]["501"][3:5] == (3, 1)
    assert a["contacts"]["502"][1] == "Renamed Customer"
    assert a["contacts"]["503"][3:5] == (2, 1)
    assert [c[:3] for c in a["conversations"]] == [
        ("501", "open", 3),
        ("502", "closed", 1),
        ("502", "open", 1),
        ("503", "open", 2),
    ]
    linked = [m for m in a["messages"] if m[2].startswith("see this")]
    assert linked[0][2] == "see this https://shop.example/sale"
    assert linked[0][4]["xText"] == "see this https://t.co/abc"


def _known_customers(n: int, shop: str) -> None:
    """n customers with an open conversation, made one at a time."""
    _one_at_a_time(_store(*(_dm(5_000 + i, shop, str(600 + i), "hello", NOW - timedelta(hours=1)) for i in range(n))))


def _drain_statements(n: int, shop: str, base: int) -> int:
    _store(*(_dm(base + i, shop, str(600 + i), f"order {i}?", NOW) for i in range(n)))
    with CaptureQueriesContext(connection) as context:
        assert services.inbound_events_drain() == {"processed": n}
    return len([q for q in context.captured_queries if "SAVEPOINT" not in q["sql"]])


def test_a_runs_statements_do_not_grow_with_its_dms(merchant, settings):
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    _known_customers(40, SHOP_A)
    few, many = _drain_statements(5, SHOP_A, 10_000), _drain_statements(40, SHOP_A, 20_000)
    assert many == few  # one statement per step for the run, whatever its size (one at a time: 13 per DM)
    assert many < 25
    assert Message.objects.filter(direction="inbound").count() == 40 + 5 + 40


def test_a_run_that_fails_is_rolled_back_and_its_dms_processed_one_by_one(merchant, settings, monkeypatch):
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    _known_customers(3, SHOP_A)
    from webhooks_app import handlers

    answer = handlers._answer

    def answer_or_fail(recorded, account):
        if recorded.message.content == "boom":
            raise RuntimeError("a decider failed")
        answer(recorded, account)

    monkeypatch.setattr(handlers, "_answer", answer_or_fail)
    ids = _store(
        _dm(30_001, SHOP_A, "600", "one", NOW),
        _dm(30_002, SHOP_A, "601", "boom", NOW),
        _dm(30_003, SHOP_A, "602", "two", NOW),
    )
    assert services.inbound_events_drain() == {"processed": 2, "failed": 1}
    events = list(InboundEvent.objects.filter(pk__in=ids).order_by("pk"))
    assert [(e.status, e.attempts) for e in events] == [("processed", 1), ("failed", 1), ("processed", 1)]
    assert events[1].last_error == "RuntimeError: a decider failed"
    # nothing of the rolled-back run stayed: each DM stored once, counted once; the failed one not at all
    contents = list(Message.objects.filter(direction="inbound").order_by("content").values_list("content", flat=True))
    assert contents == ["hello"] * 3 + ["one", "two"]
    for conversation in Conversation.objects.all():
        assert conversation.message_count == conversation.messages.count()
    assert sorted(Contact.objects.values_list("messages_received", flat=True)) == [1, 2, 2]


def test_a_run_that_meets_a_deadlock_is_tried_again_before_going_one_by_one(merchant, settings, monkeypatch):
    from django.db import OperationalError

    from webhooks_app.handlers import RUN_HANDLERS

    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    real = RUN_HANDLERS[DirectMessageEvent]
    tries: list[int] = []

    def deadlocked_first(dms):
        tries.append(len(dms))
        real(dms)  # written, then rolled back with the run
        if len(tries) == 1:
            raise OperationalError("deadlock detected")

    monkeypatch.setattr(services, "RUN_HANDLERS", {DirectMessageEvent: deadlocked_first})
    _store(*(_dm(35_000 + i, SHOP_A, str(900 + i), "hi", NOW) for i in range(3)))
    assert services.inbound_events_drain() == {"processed": 3}
    assert tries == [3, 3]  # the whole run again, not one by one
    assert Message.objects.count() == 3
    assert sorted(Contact.objects.values_list("messages_received", flat=True)) == [1, 1, 1]

    def always_deadlocked(dms):
        tries.append(len(dms))
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(services, "RUN_HANDLERS", {DirectMessageEvent: always_deadlocked})
    tries.clear()
    _store(*(_dm(36_000 + i, SHOP_A, str(900 + i), "again", NOW) for i in range(2)))
    assert services.inbound_events_drain() == {"processed": 2}  # after two tries, one by one (the single path)
    assert tries == [2, 2]
    assert Message.objects.count() == 5


def test_a_duplicate_dm_in_a_run_is_stored_once(merchant):
    from webhooks_app.handlers import direct_messages
    from webhooks_app.parser import parse_event

    account = AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    (raw,) = split_payload(_dm(40_001, SHOP_A, "700", "twice?", NOW))
    event = parse_event(raw.kind, raw.payload)
    assert isinstance(event, DirectMessageEvent)
    direct_messages([(event, account), (event, account)])
    direct_messages([(event, account)])  # and again later: stored already
    assert Message.objects.count() == 1
    assert Contact.objects.get().messages_received == 1
    assert Conversation.objects.get().message_count == 1


@pytest.mark.django_db(transaction=True)
def test_an_event_of_a_run_another_worker_holds_a_moment_is_processed_after_it(merchant, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite takes one writer at a time)")
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    ids = _store(*(_dm(50_000 + i, SHOP_A, str(800 + i), "hi", NOW) for i in range(3)))
    assert sorted(services._claim(InboundEvent.objects.filter(pk__in=ids), timezone.now())) == ids  # a batch
    with row_locked(InboundEvent, ids[1], seconds=0.5):  # another drain's claim statement held it a moment
        started = time.monotonic()
        with batch_memo():
            assert services._process_claimed(ids) == {"processed": 3}
        assert time.monotonic() - started >= 0.2  # the run left it; alone, it waited the lock out
    assert set(InboundEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert Message.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_run_in_progress_does_not_hold_up_a_build_of_the_rollup(merchant):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite takes one writer at a time)")
    from analytics.rollup import rollup_build, rollup_differences

    account = AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_A, username="shop_a")
    with time_machine.travel(NOW - timedelta(days=2)):  # stored then: its activity a quarter-hour of its own
        _history(SHOP_A, 60_000)
    ContactActivity.objects.all().delete()  # so the build writes rows referring to the contacts the run locks
    held, release, failed = threading.Event(), threading.Event(), []

    def drain_run() -> None:
        try:
            with transaction.atomic():
                dms_record(
                    [
                        InboundDM(
                            account=account,
                            x_event_id=str(60_100 + i),
                            profile=XProfile(id=sender),
                            text="hi",
                            sent_at=NOW,
                        )
                        for i, sender in enumerate(("501", "502"))
                    ]
                )
                held.set()
                release.wait(30)
        except DatabaseError as exc:  # pragma: no cover - reported by the assertion below
            failed.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=drain_run)
    worker.start()
    try:
        assert held.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # a wait on the run's locks fails the build
        try:
            rollup_build()
            assert worker.is_alive()  # built while the run held its locks
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
    finally:
        release.set()
        worker.join()
    assert not failed
    assert ContactActivity.objects.count() == 4  # each customer's two days ago (the build's) and now (the run's)
    assert rollup_differences() == []


def test_a_contact_waiting_in_a_flow_gets_its_reply_taken_in_a_run(merchant, sandbox, shop, jane, settings):
    from automation.triggers import contacts_enroll
    from tests.flow_helpers import active_flow, node, only_execution, run_due

    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    nodes = [
        node("w", "wait_for_reply", timeout=3600),
        node("done", "add_tag", tags=["answered"]),
        node("late", "add_tag", tags=["no-answer"]),
    ]
    connections = [
        {"fromNodeId": "w", "toNodeId": "done", "branch": "replied"},
        {"fromNodeId": "w", "toNodeId": "late", "branch": "timeout"},
    ]
    flow = active_flow(merchant, "manual", nodes, connections)
    other = active_flow(merchant, "message_received", [node("t", "add_tag", tags=["other"])], name="Other")
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    assert only_execution(flow).waiting_for == "reply"
    at = datetime.now(UTC)
    _store(
        _dm(60_001, shop["id"], "9900001", "hello there", at),  # someone new: the message_received flow
        _dm(60_002, shop["id"], jane["id"], "yes please", at),  # jane: her waiting execution takes it
    )
    assert services.inbound_events_drain() == {"processed": 2}
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.steps.get(node_id="w").detail["branch"] == "replied"
    started = Execution.objects.filter(flow=other).select_related("contact")
    assert [e.contact.twitter_user_id for e in started] == ["9900001"]  # not jane: her DM was her flow's
