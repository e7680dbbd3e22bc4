"""The DM quota as a counter row (contacts.services.quota), over real HTTP against the sandbox: the three caps and
when each frees up, counts given back and taken again, X-app echoes, the row under concurrent first sends, the
query bound of a campaign send, reconciliation against X's DM events (message_found_at_x, message_mark_lost), the
data migration and the settings."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.apps import apps
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from contacts.models import AccountQuota, Contact, Conversation, Message
from contacts.services.inbound import dm_record
from contacts.services.message_states import message_found_at_x, message_mark_lost
from contacts.services.outbound import message_send
from contacts.services.quota import QuotaCap, bucket_expiry, bucket_of, quota_room, quota_state, reply_reserve
from mktx.accounts.services import account_client
from mktx.api.errors import ApiError, RateLimited
from mktx.xapi import XClient, XError
from tests.campaign_helpers import connect, customer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2027, 3, 1, 9, 1, tzinfo=UTC)  # a minute into a 10-minute bucket
MARKETING = ("campaign", "flow")


@pytest.fixture
def shop(api, sandbox):
    sandbox.limits(dm15m=1000, dm24h=100_000)  # X's own limits out of the way: these tests are about ours
    return connect(api, sandbox)


@pytest.fixture
def fans(sandbox, shop) -> list[Conversation]:
    return [conversation_of(customer(sandbox, shop, f"fan_{i}")) for i in range(3)]


def conversation_of(person: dict[str, Any]) -> Conversation:
    return Conversation.objects.select_related("account", "contact").get(contact=person["contact"])


def dm(conversation: Conversation, origin: str, text: str = "hello", **extra: Any) -> Message:
    return message_send(conversation=conversation, content=text, origin=origin, marketing=origin in MARKETING, **extra)


def used(conversation: Conversation) -> int:
    return quota_state(conversation.account_id).used


class Crash(BaseException):
    """The worker process dying mid-send: nothing after this point runs."""


# --- the caps -------------------------------------------------------------------------------------------------------


def test_campaigns_and_flows_leave_the_reply_reserve_to_replies(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 10
    settings.MKTX_REPLY_RESERVE = 0.2  # 2 of the 10 kept for replies
    for n in range(8):
        dm(fans[n % 3], MARKETING[n % 2], f"sale {n}")

    with pytest.raises(RateLimited) as campaign:
        dm(fans[0], "campaign", "one more sale")
    with pytest.raises(RateLimited) as flow:
        dm(fans[0], "flow", "a flow step")

    details = campaign.value.details
    assert (details["reason"], details["limit"], details["used"], details["reserved"]) == ("reply_reserve", 8, 8, 2)
    assert flow.value.details["reason"] == "reply_reserve"
    # replies use the reserve, up to the daily quota
    assert dm(fans[1], "staff", "about your order").status == "sent"
    assert dm(fans[2], "bot", "our hours are 9-5").status == "sent"
    with pytest.raises(RateLimited) as reply:
        dm(fans[1], "staff", "one reply too many")
    assert reply.value.details["reason"] == "daily_quota"
    assert len(sandbox.dms(senderId=shop["id"])) == 10
    assert Message.objects.filter(direction="outbound").count() == 10


@pytest.mark.parametrize(
    ("limit", "share", "kept"), [(500, 0.1, 50), (30, 0.1, 3), (5, 0.1, 1), (7, 0.9, 7), (9, 0, 0), (1, 0.1, 1)]
)
def test_the_reply_reserve_is_a_share_of_the_daily_limit_rounded_up(settings, limit, share, kept):
    settings.MKTX_X_DM_DAILY_LIMIT, settings.MKTX_REPLY_RESERVE = limit, share
    assert reply_reserve() == kept


def test_the_campaign_daily_limit_counts_campaign_dms_only(sandbox, shop, fans, settings):
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 2
    dm(fans[0], "campaign", "sale 1")
    dm(fans[1], "campaign", "sale 2")

    with pytest.raises(RateLimited) as error:
        dm(fans[2], "campaign", "sale 3")

    assert (error.value.details["reason"], error.value.details["used"]) == ("campaign_daily_limit", 2)
    assert dm(fans[2], "flow", "a flow step").status == "sent"
    assert dm(fans[2], "staff", "a reply").status == "sent"
    state = quota_state(fans[0].account_id)
    assert (state.used, state.marketing, state.campaign) == (4, 3, 2)


def test_a_cap_frees_up_when_enough_has_left_the_window(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 3
    with time_machine.travel(START, tick=True) as clock:
        dm(fans[0], "staff", "one")
        dm(fans[1], "staff", "two")
        clock.shift(timedelta(hours=1))
        dm(fans[2], "staff", "three")

        with pytest.raises(RateLimited) as error:
            dm(fans[0], "staff", "four")

        # the two DMs of the first bucket leave 24 h after its end (09:10): one more then fits
        first_out = datetime(2027, 3, 2, 9, 10, tzinfo=UTC)
        assert error.value.details["resetAt"] == "2027-03-02T09:10:00Z"
        assert 22 * 3600 < int(error.value.headers["Retry-After"]) <= 23 * 3600 + 9 * 60
        state = quota_state(fans[0].account_id)
        assert state.reset_at(QuotaCap.DAILY) == first_out
        settings.MKTX_X_DM_DAILY_LIMIT = 1  # all three must leave: the later bucket's end
        assert quota_state(fans[0].account_id).reset_at(QuotaCap.DAILY) == datetime(2027, 3, 2, 10, 10, tzinfo=UTC)
        settings.MKTX_X_DM_DAILY_LIMIT = 3

        clock.move_to(first_out - timedelta(seconds=2))
        with pytest.raises(RateLimited):
            dm(fans[0], "staff", "still too soon")
        clock.move_to(first_out + timedelta(seconds=1))
        assert dm(fans[0], "staff", "four").status == "sent"


def test_quota_room_answers_how_many_more_and_when_the_next_frees_up(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT, settings.MKTX_REPLY_RESERVE, settings.MKTX_CAMPAIGN_DAILY_LIMIT = 10, 0.2, 5
    with time_machine.travel(START, tick=False):
        for n in range(3):
            dm(fans[n], "campaign", f"sale {n}")
        for n in range(4):
            dm(fans[n % 3], "staff", f"reply {n}")
        account_id = fans[0].account_id

        campaign, reply = quota_room(account_id, origin="campaign"), quota_room(account_id, origin="staff")
        assert (campaign.available, campaign.next_at, campaign.cap) == (1, START, None)  # 8 - 7 under the reserve
        assert (reply.available, reply.cap) == (3, None)
        dm(fans[0], "campaign", "the last sale")
        full = quota_room(account_id, origin="campaign")
        assert (full.available, full.cap) == (0, QuotaCap.RESERVE)
        assert full.next_at == bucket_expiry(bucket_of(START))
        assert quota_room(account_id, origin="flow").cap == QuotaCap.RESERVE


# --- what counts ----------------------------------------------------------------------------------------------------


def test_a_failed_send_gives_its_count_back(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 1
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    with pytest.raises(ApiError):
        dm(fans[0], "staff", "lost in X")
    assert Message.objects.get(direction="outbound").status == "failed"
    assert used(fans[0]) == 0

    assert dm(fans[0], "staff", "again").status == "sent"
    assert used(fans[0]) == 1


def test_dms_written_in_xs_app_count_in_the_quota_once(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 1
    contact = fans[0].contact
    echo = {
        "account": shop["account"], "x_event_id": "930000000000000001", "sender_id": shop["id"],
        "recipient_id": contact.twitter_user_id, "text": "written on the phone", "sent_at": timezone.now(),
        "profiles": {},
    }  # fmt: skip
    recorded = dm_record(**echo)
    assert recorded is not None and recorded.message.origin == "x_app"
    assert dm_record(**echo) is None  # a replay

    assert used(fans[0]) == 1
    with pytest.raises(RateLimited):
        dm(fans[1], "staff", "no room left")


def test_the_row_drops_buckets_that_left_the_window_when_rewritten(sandbox, shop, fans):
    with time_machine.travel(START, tick=True) as clock:
        dm(fans[0], "staff", "yesterday")
        clock.shift(timedelta(hours=24, minutes=10))
        dm(fans[0], "staff", "today")
    row = AccountQuota.objects.get(pk=fans[0].account_id)
    assert list(row.buckets.values()) == [[1, 0, 0]]
    assert used(fans[0]) == 1


def test_an_idempotency_key_already_used_answers_its_message_even_with_the_quota_full(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 1
    first = dm(fans[0], "system", "once", idempotency_key="away:1")
    again = dm(fans[0], "system", "once", idempotency_key="away:1")
    assert again.pk == first.pk
    assert len(sandbox.dms(senderId=shop["id"])) == 1
    assert used(fans[0]) == 1


@pytest.mark.skipif(not django_settings.IS_POSTGRES, reason="SQLite's test database is one in-memory connection")
@pytest.mark.django_db(transaction=True)
def test_two_first_sends_at_once_pass_the_cap_once(sandbox, shop, fans, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 1
    assert not AccountQuota.objects.exists()  # neither send finds the account's row
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def send(conversation: Conversation) -> None:
        try:
            start.wait()
            dm(conversation, "staff", f"first to {conversation.contact.username}")
            outcomes.append("sent")
        except RateLimited:
            outcomes.append("rate_limited")
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(fans[n],)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["rate_limited", "sent"]
    assert AccountQuota.objects.count() == 1
    assert len(sandbox.dms(senderId=shop["id"])) == 1
    assert used(fans[0]) == 1


# --- the lean send --------------------------------------------------------------------------------------------------

TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "COMMIT", "ROLLBACK")


@pytest.mark.django_db(transaction=True)
def test_a_campaign_send_runs_at_most_six_queries_besides_the_x_call(
    sandbox, shop, fans, django_assert_max_num_queries
):
    dm(fans[0], "campaign", "the account's first DM creates its quota row", idempotency_key="delivery:0:1")
    conversation = Conversation.objects.select_related("account", "contact").get(pk=fans[1].pk)

    with django_assert_max_num_queries(8) as captured:  # the bound, transaction control included
        message = dm(conversation, "campaign", "Spring sale!", idempotency_key="delivery:1:1")

    statements = [q["sql"] for q in captured.captured_queries]
    work = [sql for sql in statements if not sql.lstrip().upper().startswith(TRANSACTION_CONTROL)]
    assert len(work) <= 6, "\n".join(work)
    assert not [sql for sql in statements if "mktx_cache" in sql]  # X's headers no longer go through the cache
    # and it all happened
    message.refresh_from_db()
    assert (message.status, message.content) == ("sent", "Spring sale!")
    assert message.twitter_message_id == sandbox.dms(senderId=shop["id"])[-1]["id"]
    conversation.refresh_from_db()
    contact = Contact.objects.get(pk=conversation.contact_id)
    assert (conversation.message_count, contact.messages_sent) == (2, 1)
    assert conversation.last_message_at == message.created_at
    assert quota_state(conversation.account_id).campaign == 2


# --- reconciliation against X ---------------------------------------------------------------------------------------


def unclear_send(sandbox: Any, conversation: Conversation, text: str, *, x_sent_it: bool) -> Message:
    """A send that times out: X sent the DM before hanging, or never got it."""
    sandbox.fault(
        method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1, times=1, afterSend=x_sent_it
    )
    with pytest.raises(ApiError):
        dm(conversation, "campaign", text)
    message = Message.objects.filter(direction="outbound", content=text).order_by("-created_at").first()
    assert message is not None
    return message


def test_a_failed_message_found_at_x_is_sent_and_counts_again(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fans[0], "did it go?", x_sent_it=True)
    assert (message.status, message.error_code, used(fans[0])) == ("failed", "Timeout", 0)
    (at_x,) = sandbox.dms(senderId=shop["id"])

    assert message_found_at_x(message=message) is True

    message.refresh_from_db()
    assert (message.status, message.twitter_message_id, message.error_code) == ("sent", at_x["id"], "")
    state = quota_state(fans[0].account_id)
    assert (state.used, state.campaign) == (1, 1)
    assert Contact.objects.get(pk=fans[0].contact_id).messages_sent == 1
    assert message_found_at_x(message=message) is True  # again: nothing moves twice
    assert used(fans[0]) == 1
    assert Contact.objects.get(pk=fans[0].contact_id).messages_sent == 1


def test_a_message_x_never_got_is_not_found(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fans[0], "did it go?", x_sent_it=False)

    assert message_found_at_x(message=message) is False

    message.refresh_from_db()
    assert (message.status, message.twitter_message_id) == ("failed", None)
    assert used(fans[0]) == 0


def test_an_event_already_recorded_on_another_message_is_not_taken_again(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    sent = dm(fans[0], "campaign", "Spring sale!")
    retry = unclear_send(sandbox, fans[0], "Spring sale!", x_sent_it=False)  # same text, seconds later

    assert message_found_at_x(message=retry) is False
    sent.refresh_from_db()
    assert sent.twitter_message_id == sandbox.dms(senderId=shop["id"])[0]["id"]


def test_a_dm_with_the_same_text_sent_before_the_message_was_stored_is_not_it(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    with time_machine.travel(START, tick=True) as clock:
        account_client(shop["account"]).send_dm(fans[0].contact.twitter_user_id, text="Spring sale!")  # last hour
        clock.shift(timedelta(hours=1))
        message = unclear_send(sandbox, fans[0], "Spring sale!", x_sent_it=False)

        assert message_found_at_x(message=message) is False
    message.refresh_from_db()
    assert message.status == "failed"


def test_reconciling_with_x_unreachable_raises_and_changes_nothing(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fans[0], "did it go?", x_sent_it=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.X_API_BASE_URL = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(XError):
        message_found_at_x(message=message)

    message.refresh_from_db()
    assert (message.status, used(fans[0])) == ("failed", 0)


def test_a_message_whose_worker_died_before_x_answered_is_lost_and_gives_its_count_back(
    sandbox, shop, fans, monkeypatch
):
    def dying_send(self: XClient, participant_id: str, **kwargs: Any) -> Any:
        raise Crash

    monkeypatch.setattr(XClient, "send_dm", dying_send)
    with pytest.raises(Crash):
        dm(fans[0], "campaign", "Spring sale!")
    monkeypatch.undo()
    message = Message.objects.get(direction="outbound")
    assert (message.status, used(fans[0])) == ("pending", 1)
    assert message_found_at_x(message=message) is False

    message_mark_lost(message=message, detail="the worker stopped before X answered")

    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_detail) == (
        "failed", "Lost", "the worker stopped before X answered",
    )  # fmt: skip
    assert used(fans[0]) == 0
    message_mark_lost(message=message, detail="again")  # no longer pending: nothing moves
    assert used(fans[0]) == 0
    assert AccountQuota.objects.get(pk=fans[0].account_id).buckets == {}


# --- the data migration and the settings ----------------------------------------------------------------------------


def test_the_migration_fills_the_counter_from_the_last_24_hours_of_messages(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    dm(fans[0], "campaign", "sale")
    dm(fans[1], "flow", "flow step")
    dm(fans[2], "staff", "reply")
    old = dm(fans[2], "staff", "two days ago")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    unclear_send(sandbox, fans[0], "failed: not counted", x_sent_it=False)
    AccountQuota.objects.all().delete()

    migration = importlib.import_module("contacts.migrations.0008_account_quota")
    migration.fill_from_messages(apps, None)

    state = quota_state(fans[0].account_id)
    assert (state.used, state.marketing, state.campaign) == (3, 2, 1)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"MKTX_REPLY_RESERVE": "0.95"}, "between 0 and 0.9"),
        ({"MKTX_REPLY_RESERVE": "-0.1"}, "between 0 and 0.9"),
        ({"MKTX_REPLY_RESERVE": "ten percent"}, "is not a fraction"),
        ({"MKTX_REPLY_RESERVE": "nan"}, "between 0 and 0.9"),
        ({"MKTX_MIN_SEND_INTERVAL_MS": "-1"}, "must be at least 0"),
        ({"MKTX_REPLY_RESERVE": "0.25", "MKTX_MIN_SEND_INTERVAL_MS": "250"}, "OK 0.25 250"),
        ({}, "OK 0.1 1000"),
    ],
)
def test_the_reserve_and_interval_settings_fail_loudly_on_bad_values(env, problem):
    code = "from django.conf import settings as s; print('OK', s.MKTX_REPLY_RESERVE, s.MKTX_MIN_SEND_INTERVAL_MS)"
    clean = {k: v for k, v in os.environ.items() if k not in ("MKTX_REPLY_RESERVE", "MKTX_MIN_SEND_INTERVAL_MS")}
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "mktx.settings", "DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert problem in result.stdout + result.stderr
