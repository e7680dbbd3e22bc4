"""The rollup the overview reads (mktx/tallies, contacts/services/rollup.py, campaigns/rollup.py, analytics/rolled.py):
kept by the real paths in step with the rows (checked against a count from the rows, `rollup_differences`), the
overview from it equal to the overview from the rows in every range, erasure, merging, the first build, the
command, the dashboard's freshness line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from itertools import count
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command

from analytics import reports, rolled
from analytics.params import report_scope
from analytics.rollup import rollup_build, rollup_differences, rollup_maintain
from campaigns.models import Delivery
from contacts.models import Contact, ContactActivity, Conversation, MessageOrigin
from contacts.services.contacts import XProfile, contact_erase
from contacts.services.conversations import conversation_close, conversation_reopen
from contacts.services.inbound import dm_record, follow_record
from contacts.services.outbound import message_send
from mktx.tallies.models import Tally, TallyState
from mktx.tallies.services import bucket_of, tallies_add, tallies_built, tallies_merge, tally_sum
from tests.campaign_helpers import CLOCK_START, FreshTokenClient, connect, customer, drain
from tests.test_campaigns import act, create, segment, template

pytestmark = pytest.mark.django_db
_ids = count(980_000_000_000_000_001)


def scope_of(merchant_id: Any, **params: str) -> Any:
    return report_scope(SimpleNamespace(query_params=params), merchant_id=merchant_id)  # type: ignore[arg-type]


def both_ways(merchant_id: Any, **params: str) -> dict[str, Any]:
    """The overview from the rollup, asserted equal to the overview from the rows (and so the conversations
    report, whose series and open counts come from it too)."""
    scope = scope_of(merchant_id, **params)
    assert rolled.usable(scope)
    from_rollup = reports.overview(scope)
    assert from_rollup == reports.overview(scope, rollup=False)
    assert reports.conversations(scope) == reports.conversations(scope, rollup=False)
    return from_rollup


def dm(shop: dict[str, Any], sender: dict[str, Any], text: str, sent_at: datetime, to: str = "") -> Any:
    recorded = dm_record(
        account=shop["account"],
        x_event_id=str(next(_ids)),
        sender_id=sender["id"],
        recipient_id=to or shop["id"],
        text=text,
        sent_at=sent_at,
        profiles={sender["id"]: XProfile(id=sender["id"], username=sender["username"], name=sender["name"])},
    )
    assert recorded is not None
    return recorded


def test_the_real_paths_keep_the_rollup_in_step_with_the_rows(clock, sandbox, shop, owner):
    rollup_build()  # an empty database: built, and kept from here by the services
    assert tallies_built()
    jane = customer(sandbox, shop, "jane_doe")  # a DM 4 days back: a new contact, a conversation opened
    conversation = Conversation.objects.get(contact=jane["contact"])
    clock.shift(timedelta(minutes=20))
    message_send(conversation=conversation, content="hello jane", origin=MessageOrigin.STAFF, sent_by_id=owner.pk)
    dm(shop, jane, "thanks", CLOCK_START + timedelta(minutes=25))
    message_send(conversation=Conversation.objects.get(pk=conversation.pk), content="bot", origin=MessageOrigin.BOT)
    conversation_close(conversation=Conversation.objects.get(pk=conversation.pk))
    clock.shift(timedelta(hours=2))
    conversation_reopen(conversation=Conversation.objects.get(pk=conversation.pk))
    # a follower first, who then DMs with an earlier time (X delivers out of order): the first interaction moves
    bob = sandbox.user("bob_follows", "Bob")
    follow_record(
        account=shop["account"],
        follower=XProfile(id=bob["id"], username="bob_follows", name="Bob"),
        followed_id=shop["id"],
        following=True,
        at=CLOCK_START + timedelta(hours=3),
    )
    dm(shop, {**bob, "username": "bob_follows"}, "hi", CLOCK_START + timedelta(hours=1))
    bob_contact = Contact.objects.get(twitter_user_id=bob["id"])
    assert bob_contact.first_interaction_at == CLOCK_START + timedelta(hours=1)
    # an X-app reply, seen through its echo
    app = {"id": shop["id"], "username": "goodgo_shop", "name": "Shop"}
    dm(shop, app, "from the app", CLOCK_START + timedelta(hours=4), to=bob["id"])

    assert rollup_differences() == []
    merchant_id = shop["account"].merchant_id
    day = both_ways(merchant_id, startDate="2027-03-01", endDate="2027-03-01")
    assert day["contacts"]["new"] == 1  # bob; jane first wrote 4 days before
    assert day["messages"] == {"inbound": 3, "outbound": 3}  # stored today: jane's two, bob's; staff, bot, X app
    assert day["conversations"]["opened"] == 2 and day["conversations"]["closed"] == 1  # bob's, jane's reopening
    week = both_ways(merchant_id, startDate="2027-02-20", endDate="2027-03-02", timezone="Asia/Kathmandu")  # +05:45
    assert week["contacts"]["total"] == 2 and week["contacts"]["active"] == 2

    contact_erase(contact=Contact.objects.get(pk=jane["contact"].pk))
    assert rollup_differences() == []
    assert both_ways(merchant_id, startDate="2027-02-20", endDate="2027-03-02")["contacts"]["total"] == 1


def test_a_campaign_counts_its_answered_sends(clock, sandbox, owner, settings):
    from mktx.accounts.services import webhook_url

    api = FreshTokenClient(owner)
    sandbox.register_webhook(webhook_url())
    shop = connect(api, sandbox)
    rollup_build()
    for i in range(3):
        customer(sandbox, shop, f"fan_{i}", "fans")
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    assert act(api, data["id"], "start").status_code == 200
    drain(clock)
    assert Delivery.objects.filter(campaign_id=data["id"], status="sent").count() == 3
    assert tally_sum([shop["account"].pk], "deliveries.attempted") == 3
    assert rollup_differences() == []
    overview = both_ways(shop["account"].merchant_id, startDate="2027-03-01", endDate="2027-03-01")
    assert overview["campaigns"]["totalMessagesSent"] == 3


def test_the_history_overview_and_conversations_are_the_same_from_the_rollup_and_from_the_rows(history):
    assert rollup_differences() == []
    merchant_id = history.merchant.pk
    for params in (
        {"startDate": "2026-01-01", "endDate": "2026-01-31"},
        {"startDate": "2026-01-01", "endDate": "2026-01-31", "timezone": "Asia/Ho_Chi_Minh"},
        {"startDate": "2026-01-10", "endDate": "2026-01-12", "timezone": "America/New_York"},
        {"startDate": "2025-12-01", "endDate": "2026-02-28", "accountId": str(history.accounts[1].pk)},
        {"startDate": "2025-12-01", "endDate": "2026-02-28", "groupBy": "week", "timezone": "Asia/Kathmandu"},
        {"startDate": "2025-12-01", "endDate": "2026-02-28", "groupBy": "month", "timezone": "Asia/Ho_Chi_Minh"},
    ):
        both_ways(merchant_id, **params)


def test_a_range_off_the_quarter_hours_reads_the_rows(history):
    rollup_build()
    scope = scope_of(history.merchant.pk, startDate="2026-01-01T10:07:00", endDate="2026-01-20T00:00:00")
    assert not rolled.usable(scope)
    Tally.objects.all().delete()  # were it read, the counts would be zeros
    assert reports.overview(scope) == reports.overview(scope, rollup=False)
    assert reports.overview(scope)["contacts"]["total"] > 0


def test_before_the_first_build_the_overview_reads_the_rows_and_the_maintenance_builds_it(history):
    TallyState.objects.all().delete()  # as on a database migrated a moment ago
    Tally.objects.all().delete()
    scope = scope_of(history.merchant.pk, startDate="2026-01-01", endDate="2026-01-31")
    assert not tallies_built() and not rolled.usable(scope)
    from_rows = reports.overview(scope)
    rollup_maintain()  # the minute schedule: the first build, then the merge
    assert tallies_built() and rolled.usable(scope)
    assert reports.overview(scope) == from_rows
    assert TallyState.objects.get().merged_at is not None


def test_merging_folds_a_buckets_rows_into_one_and_keeps_the_sums(shop):
    account = shop["account"].pk
    at = datetime(2027, 3, 1, 9, 7, tzinfo=UTC)
    tallies_add([(account, "messages.inbound", at, 1)] * 1)
    tallies_add([(account, "messages.inbound", at + timedelta(minutes=5), 1)])  # the same quarter-hour
    tallies_add([(account, "messages.inbound", at + timedelta(minutes=10), 1)])  # the next one
    tallies_add([(account, "contacts.arrived", at, 1), (account, "contacts.arrived", at, -1)])  # nets to nothing
    assert Tally.objects.count() == 3
    assert tallies_merge() == 3
    rows = list(Tally.objects.order_by("bucket").values_list("bucket", "n", "merged"))
    assert rows == [(bucket_of(at), 2, True), (bucket_of(at) + timedelta(minutes=15), 1, True)]
    assert tally_sum([account], "messages.inbound") == 3
    tallies_add([(account, "messages.inbound", at, 4)])
    assert tallies_merge() == 2 and list(Tally.objects.order_by("bucket").values_list("n", flat=True)) == [6, 1]


def test_a_build_leaves_the_activity_that_is_right_and_mends_the_rest(history):
    account = history.accounts[0].pk
    rows = ContactActivity.objects.filter(account_id=account)
    right = set(rows.values_list("pk", flat=True))
    lost = rows.order_by("pk")[0]
    right.remove(lost.pk)
    lost.delete()  # as if its DM were written without the services
    stray = ContactActivity.objects.create(
        account_id=account, contact_id=lost.contact_id, bucket=datetime(2020, 1, 1, tzinfo=UTC)
    )  # of no DM
    rollup_build()
    after = set(rows.values_list("pk", flat=True))
    assert right < after  # not written again: a drain writing activity meanwhile does not wait on them
    assert stray.pk not in after and len(after) == len(right) + 1
    assert rows.filter(contact_id=lost.contact_id, bucket=lost.bucket).exists()
    assert rollup_differences() == []


@pytest.mark.django_db(transaction=True)
def test_a_contact_erased_while_a_build_reads_the_dms_leaves_the_build_whole(history, monkeypatch):
    from contacts.services import rollup as inbox

    rows = ContactActivity.objects.all()
    before = {(a.contact_id, a.bucket) for a in rows}
    rows.delete()  # the build writes them all again, the erased contact's among them
    gone = history.conversations["cat"].contact
    read = inbox.grouped_by_quarter

    def then_erased(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)  # the DMs, the erased contact's among them
        contact_erase(contact=Contact.objects.get(pk=gone.pk))  # by a staff member, as the build goes
        return found

    monkeypatch.setattr(inbox, "grouped_by_quarter", then_erased)
    rollup_build()
    assert tallies_built()
    assert {(a.contact_id, a.bucket) for a in rows} == {key for key in before if key[0] != gone.pk}
    assert rollup_differences() == []


def test_a_dm_stored_while_a_build_reads_keeps_its_activity_row(history, monkeypatch):
    from contacts.services import rollup as inbox

    contact = history.conversations["cat"].contact
    now = datetime(2026, 6, 1, 9, 5, tzinfo=UTC)
    stray = ContactActivity.objects.create(account_id=contact.account_id, contact=contact, bucket=bucket_of(now))
    read = inbox.grouped_by_quarter

    def then_dmed(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)  # the DMs, none yet for the stray row
        with time_machine.travel(now, tick=False):  # the customer DMs: the row is there already, and now right
            recorded = dm_record(
                account=contact.account,
                x_event_id=str(next(_ids)),
                sender_id=contact.twitter_user_id,
                recipient_id=contact.account.twitter_user_id,
                text="still there?",
                sent_at=now,
                profiles={},
            )
        assert recorded is not None
        return found

    monkeypatch.setattr(inbox, "grouped_by_quarter", then_dmed)
    rollup_build()
    assert ContactActivity.objects.filter(pk=stray.pk).exists()
    assert rollup_differences() == []


def test_the_command_builds_checks_and_merges(history):
    out = StringIO()
    call_command("analytics_rollup", "--build", "--check", stdout=out)
    assert "the rollup agrees with the rows" in out.getvalue() and "built at" in out.getvalue()
    account = history.accounts[0].pk
    tallies_add([(account, "messages.inbound", datetime(2026, 1, 5, tzinfo=UTC), 1)])  # not from a row
    ContactActivity.objects.filter(account_id=account).delete()
    with pytest.raises(CommandError, match="differences between the rollup and the rows"):
        call_command("analytics_rollup", "--check", stdout=(out := StringIO()))
    assert "messages.inbound 2026-01-05 00:00" in out.getvalue() and "activity missing" in out.getvalue()
    Conversation.objects.filter(pk=history.conversations["cat"].pk).update(status="closed")  # no closing written
    with pytest.raises(CommandError):
        call_command("analytics_rollup", "--check", stdout=(out := StringIO()))
    assert "open now, account" in out.getvalue() and "by the status" in out.getvalue()
    Conversation.objects.filter(pk=history.conversations["cat"].pk).update(status="open")
    call_command("analytics_rollup", "--build", "--merchant-id", str(history.merchant.pk), "--merge", stdout=out)
    call_command("analytics_rollup", "--check", "--merchant-id", str(history.merchant.pk), stdout=(out := StringIO()))
    assert "agrees" in out.getvalue()
    for bad in (["--check", "--merchant-id", "nope"], ["--build", "--merchant-id", str(owner_less())], []):
        with pytest.raises(CommandError):
            call_command("analytics_rollup", *bad, stdout=StringIO())


def owner_less() -> Any:
    import uuid

    return uuid.uuid4()


def test_the_dashboard_shows_the_rollups_freshness(history, admin_client):
    url = "/admin/analytics/dashboard/"
    params = {"merchant": str(history.merchant.pk), "startDate": "2026-01-01", "endDate": "2026-01-31"}
    TallyState.objects.all().delete()
    page = admin_client.get(url, params).content.decode()
    assert "not built yet: the overview reads the rows" in page
    rollup_build()
    page = admin_client.get(url, params).content.decode()
    assert "the overview reads it for this range" in page and "entries waiting to be merged" in page


def test_the_rollups_admin_pages_list_it_read_only(history, admin_client):
    for url in ("/admin/tallies/tally/", "/admin/tallies/tallystate/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert "Add" not in page.content.decode().split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert (
        "contacts.arrived" in admin_client.get("/admin/tallies/tally/", {"metric": "contacts.arrived"}).content.decode()
    )
    assert admin_client.get("/admin/tallies/tally/add/").status_code == 403
    # nor are the rows it counts deleted in the back office (a contact goes through erasure, which takes its counts)
    talk = history.conversations["ann"]
    message = talk.messages.first()
    for url in (
        f"/admin/contacts/conversation/{talk.pk}/delete/",
        f"/admin/contacts/message/{message.pk}/delete/",
        f"/admin/contacts/conversationevent/{talk.events.first().pk}/delete/",
    ):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=talk.pk).exists() and talk.messages.filter(pk=message.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_merges_keep_the_rollup_exact(settings):
    """Four workers record DMs (new contacts, the same contacts again, late events that move a first interaction)
    while a fifth merges the rollup over and over: afterwards it agrees with the rows to the unit."""
    import threading

    from django.db import connection as default_connection
    from django.db import connections

    from tests.factories import AccountFactory

    if default_connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing runs concurrently there")
    account = AccountFactory.create()
    rollup_build()
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    barrier, stop, errors = threading.Barrier(5), threading.Event(), []

    def record(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(15):
                person = f"77{(worker + i) % 6}"  # six people, written to by every worker
                dm_record(
                    account=account,
                    x_event_id=f"{worker}-{i}",
                    sender_id=person,
                    recipient_id=account.twitter_user_id,
                    text="hi",
                    sent_at=start + timedelta(minutes=7 * i - 30 * worker),  # some earlier than the first
                    profiles={},
                )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def merge() -> None:
        try:
            barrier.wait()
            while not stop.is_set():
                tallies_merge()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=record, args=(worker,)) for worker in range(4)]
    merger = threading.Thread(target=merge)
    for thread in [*writers, merger]:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    merger.join()
    assert errors == []
    assert Contact.objects.filter(account=account).count() == 6
    assert rollup_differences() == []
    tallies_merge()
    assert rollup_differences() == [] and not Tally.objects.filter(merged=False).exists()
    assert tally_sum([account.pk], "contacts.arrived") == 6 and tally_sum([account.pk], "messages.inbound") == 60
