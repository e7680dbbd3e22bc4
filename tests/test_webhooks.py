"""The webhook receiver: CRC, signatures, store-first with deduplication, processing, retries, replay, admin."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from mktx.accounts.models import Account
from tests.factories import AccountFactory
from webhooks_app import handlers
from webhooks_app.events import DirectMessageEvent
from webhooks_app.models import InboundEvent
from webhooks_app.services import inbound_events_sweep
from webhooks_app.signatures import sign

pytestmark = pytest.mark.django_db

HOOK = "/api/v1/mkt-x/webhooks/twitter"
VERIFY = "/api/v1/mkt-x/webhooks/verify"
SECRET = "test-consumer-secret"
FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x_events.json").read_text())
SHOP_ID = "4337869213"


def deliver(payload: dict | bytes, *, secret: str = SECRET, signature: str | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {} if signature == "" else {"x-twitter-webhooks-signature": signature or sign(secret, body)}
    return Client().post(HOOK, body, content_type="application/json", headers=headers)


@pytest.fixture
def shop_account(merchant) -> Account:
    return AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")


def dm_handler_set(monkeypatch, handler) -> None:
    """`handler` in place of the inbox's DM handler, for one event and for a drain's runs of them (called for each
    DM of the run: a run that raises is rolled back, and its events are processed again one by one)."""
    monkeypatch.setattr("webhooks_app.services.HANDLERS", {**handlers.HANDLERS, DirectMessageEvent: handler})
    runs = {DirectMessageEvent: lambda dms: [handler(event, account) for event, account in dms]}
    monkeypatch.setattr("webhooks_app.services.RUN_HANDLERS", runs)


@pytest.fixture
def dm_calls(monkeypatch) -> list[DirectMessageEvent]:
    """A DM handler that records its calls, in place of the inbox's."""
    calls: list[DirectMessageEvent] = []
    dm_handler_set(monkeypatch, lambda event, account: calls.append(event))
    return calls


# --- CRC ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [VERIFY, HOOK])
def test_the_crc_answer_is_the_hmac_of_the_token(path, settings):
    settings.X_CONSUMER_SECRET = "test"
    token = "aBcDeFgHiJkLmNoPqRsT-_=+/"
    response = Client().get(path, {"crc_token": token, "nonce": "n"})
    assert response.status_code == 200
    assert response.json() == {"response_token": sign("test", token.encode())}


def test_signatures_match_the_published_test_vector():
    assert (
        sign("test", b'{"test_number":1,"test_string":"two"}') == "sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI="
    )


@pytest.mark.parametrize(
    "token", ["", "short", "has spaces in it......", "x" * 129, '{"test_number":1,"test_string":"two"}']
)
def test_the_crc_answers_only_token_shaped_values(token):
    response = Client().get(VERIFY, {"crc_token": token})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "crc_token"


def test_the_crc_needs_no_jwt_and_is_not_rate_limited(settings):
    settings.MKTX_API_RATE_LIMIT = (1, 60)
    statuses = [Client().get(VERIFY, {"crc_token": "a" * 20}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


# --- signature and storage ---------------------------------------------------------------------------------------


def test_a_signed_delivery_is_stored_and_answered_200(shop_account, dm_calls, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(FIXTURES["direct_message"])

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.kind, event.dedup_key, event.for_user_id) == (
        "direct_message",
        f"dm:954491830116155396:{SHOP_ID}",
        SHOP_ID,
    )
    assert event.payload["direct_message_events"][0]["message_create"]["message_data"]["text"].startswith("Hello")
    assert event.status == "processed"
    assert event.account == shop_account
    assert [c.event_id for c in dm_calls] == ["954491830116155396"]


def test_the_published_test_vector_body_is_accepted_and_kept_as_unknown(settings, django_capture_on_commit_callbacks):
    settings.X_CONSUMER_SECRET = "test"
    body = b'{"test_number":1,"test_string":"two"}'
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(body, signature="sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI=")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.kind, event.status) == ("unknown", "ignored")


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=AAAA", "garbage", sign("another-secret", json.dumps(FIXTURES["direct_message"]).encode())],
)
def test_a_forged_or_missing_signature_is_401_and_nothing_is_stored(signature):
    response = deliver(FIXTURES["direct_message"], signature=signature)
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"
    assert not InboundEvent.objects.exists()


def test_a_signature_of_another_body_is_refused():
    other = sign(SECRET, b'{"something": "else"}')
    assert deliver(FIXTURES["direct_message"], signature=other).status_code == 401
    assert not InboundEvent.objects.exists()


def test_a_duplicate_delivery_is_acknowledged_and_processed_once(
    shop_account, dm_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(FIXTURES["direct_message"])
        second = deliver(FIXTURES["direct_message"])

    assert (first.status_code, second.status_code) == (200, 200)
    assert InboundEvent.objects.count() == 1
    assert len(dm_calls) == 1
    assert InboundEvent.objects.get().attempts == 1


def test_each_event_of_a_delivery_is_stored(shop_account, dm_calls, django_capture_on_commit_callbacks):
    body = copy.deepcopy(FIXTURES["direct_message"])
    extra = copy.deepcopy(body["direct_message_events"][0])
    extra["id"] = "954491830116155999"
    body["direct_message_events"].append(extra)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(body).json()["data"] == {"received": 2}
    assert InboundEvent.objects.filter(status="processed").count() == 2
    assert len(dm_calls) == 2


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"text"'])
def test_a_signed_body_that_is_not_a_payload_is_400(body):
    response = deliver(body)
    assert response.status_code == 400
    assert not InboundEvent.objects.exists()


def test_an_oversized_body_is_413(settings):
    settings.MKTX_WEBHOOK_MAX_BYTES = 1024
    body = copy.deepcopy(FIXTURES["direct_message"])
    body["direct_message_events"][0]["message_create"]["message_data"]["text"] = "x" * 2000
    assert deliver(body).status_code == 413
    assert not InboundEvent.objects.exists()


def test_the_webhook_needs_the_consumer_secret_configured(settings):
    settings.X_CONSUMER_SECRET = ""
    assert deliver(FIXTURES["direct_message"]).status_code == 503
    assert Client().get(VERIFY, {"crc_token": "a" * 20}).status_code == 503


# --- processing ----------------------------------------------------------------------------------------------------


def _process(payload: dict, capture) -> InboundEvent:
    with capture(execute=True):
        assert deliver(payload).status_code == 200
    return InboundEvent.objects.latest("id")


def test_events_for_unknown_or_inactive_accounts_are_kept_and_ignored(
    merchant, dm_calls, django_capture_on_commit_callbacks
):
    event = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)
    assert (event.status, event.status_reason) == ("ignored", "no active connected account for this X user")

    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, status="inactive")
    echo = _process(FIXTURES["echo"], django_capture_on_commit_callbacks)
    assert echo.status == "ignored"
    assert dm_calls == []


def test_kinds_without_a_handler_are_ignored(shop_account, django_capture_on_commit_callbacks):
    typing = _process(FIXTURES["typing"], django_capture_on_commit_callbacks)
    assert typing.status == "ignored"
    assert "no handler" in typing.status_reason


def test_revoke_marks_the_account_error(shop_account, django_capture_on_commit_callbacks):
    event = _process(FIXTURES["revoke"], django_capture_on_commit_callbacks)
    assert event.status == "processed"
    shop_account.refresh_from_db()
    assert shop_account.status == "error"
    assert "revoked" in shop_account.status_reason


def test_a_handler_failure_is_recorded_and_retried_with_backoff(
    shop_account, monkeypatch, django_capture_on_commit_callbacks
):
    down = [True]

    def flaky(event, account):
        if down[0]:
            raise RuntimeError("database hiccup")

    dm_handler_set(monkeypatch, flaky)
    event = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)

    assert event.status == "failed"
    assert event.attempts == 1
    assert event.last_error == "RuntimeError: database hiccup"
    assert event.next_attempt_at is not None and event.next_attempt_at > timezone.now()

    down[0] = False
    assert inbound_events_sweep() == {}  # not due yet
    assert inbound_events_sweep(now=event.next_attempt_at + timedelta(seconds=1)) == {"processed": 1}
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == ("processed", 2, "")


def test_a_handler_that_keeps_failing_stops_after_the_last_attempt(
    shop_account, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(event, account):
        raise ValueError("always")

    dm_handler_set(monkeypatch, broken)
    event = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)
    far_future = timezone.now() + timedelta(days=1)
    for _ in range(10):
        inbound_events_sweep(now=far_future)
    event.refresh_from_db()
    assert event.status == "failed"
    assert event.attempts == 5
    assert event.next_attempt_at is None


def test_the_sweep_processes_events_whose_enqueue_was_lost(shop_account, dm_calls):
    deliver(FIXTURES["direct_message"])  # on_commit never ran: the task was never enqueued
    event = InboundEvent.objects.get()
    assert event.status == "pending"
    assert inbound_events_sweep(now=timezone.now() + timedelta(minutes=2)) == {"processed": 1}
    assert len(dm_calls) == 1


# --- replay ----------------------------------------------------------------------------------------------------------


def _replay(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("replay_webhooks", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_replay_reruns_failed_events_and_reports_counts(shop_account, monkeypatch, django_capture_on_commit_callbacks):
    dm_handler_set(monkeypatch, lambda e, a: 1 / 0)
    event = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)
    assert event.status == "failed"
    calls: list[str] = []
    dm_handler_set(monkeypatch, lambda e, a: calls.append(e.event_id))

    assert "1 events would be replayed" in _replay("--status", "failed", "--dry-run")
    event.refresh_from_db()
    assert event.status == "failed"

    output = _replay("--status", "failed")
    assert "replayed 1 events (processed: 1)" in output
    event.refresh_from_db()
    assert event.status == "processed"
    assert calls == ["954491830116155396"]
    assert "replayed 0 events (nothing to replay)" in _replay("--status", "failed")


def test_replay_filters_by_id_time_and_account(shop_account, dm_calls, django_capture_on_commit_callbacks):
    dm = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)
    _process(FIXTURES["typing"], django_capture_on_commit_callbacks)
    assert "1 events" in _replay("--id", str(dm.id), "--dry-run")
    assert "2 events" in _replay("--account", str(shop_account.id), "--dry-run")
    assert "0 events" in _replay("--since", "2999-01-01T00:00:00Z", "--dry-run")
    assert "2 events" in _replay("--until", "2999-01-01T00:00:00Z", "--dry-run")
    assert "processed: 1" in _replay("--id", str(dm.id))
    assert len(dm_calls) == 2  # replaying calls the (idempotent) handler again


@pytest.mark.parametrize(
    "args",
    [["--since", "yesterday"], ["--account", "not-a-uuid"], ["--account", "8d1c2f8e-0000-4000-8000-000000000000"]],
)
def test_replay_refuses_bad_options_with_exit_2(args):
    with pytest.raises(CommandError) as error:
        _replay(*args)
    assert error.value.returncode == 2


# --- admin -------------------------------------------------------------------------------------------------------


def test_the_admin_shows_events_with_pretty_json_and_replays(
    owner, shop_account, dm_calls, django_capture_on_commit_callbacks
):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    event = _process(FIXTURES["direct_message"], django_capture_on_commit_callbacks)

    listing = staff.get("/admin/webhooks_app/inboundevent/", {"status__exact": "processed"})
    page = staff.get(f"/admin/webhooks_app/inboundevent/{event.id}/change/")
    replay = staff.post(
        "/admin/webhooks_app/inboundevent/", {"action": "replay", "_selected_action": [event.id]}, follow=True
    )

    assert listing.status_code == 200 and "direct message" in listing.content.decode()
    assert page.status_code == 200
    assert "&quot;direct_message_events&quot;: [" in page.content.decode()
    assert "Replayed: 1 processed." in replay.content.decode()
    assert len(dm_calls) == 2


def test_the_admin_never_shows_account_tokens(owner, shop_account):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    Account.objects.filter(pk=shop_account.pk).update(oauth_token_encrypted="gAAAA-secret-cipher")
    staff = Client()
    staff.force_login(owner)
    page = staff.get(f"/admin/accounts/account/{shop_account.id}/change/").content.decode()
    assert "gAAAA-secret-cipher" not in page
    assert "oauth" not in page.lower()


# --- the drain protocol --------------------------------------------------------------------------------------------


def test_a_delivery_while_a_drain_is_queued_is_picked_up_by_that_drain(
    shop_account, dm_calls, django_capture_on_commit_callbacks
):
    from webhooks_app import services

    # given a drain already queued (its flag is set) and not yet run
    assert services._flag_add()
    with django_capture_on_commit_callbacks(execute=True):
        deliver(FIXTURES["direct_message"])
    event = InboundEvent.objects.get()
    assert event.status == "pending" and dm_calls == []  # no second task was queued

    # when the queued drain runs
    assert services.inbound_events_drain() == {"processed": 1}

    # then the event is processed and the flag is free for the next delivery
    assert len(dm_calls) == 1
    assert services._flag_add()


def test_a_drain_looks_again_after_its_grace_before_exiting(shop_account, dm_calls, settings, monkeypatch):
    from webhooks_app import services

    settings.MKTX_INBOUND_DRAIN_GRACE = 0.01
    late = copy.deepcopy(FIXTURES["direct_message"])

    def sleep_while_a_delivery_lands(seconds: float) -> None:  # a delivery that skipped the flag commits now
        services._insert_new(services.split_payload(late), None)

    monkeypatch.setattr(services.time, "sleep", sleep_while_a_delivery_lands)
    assert services.inbound_events_drain() == {"processed": 1}
    assert len(dm_calls) == 1


def test_a_process_that_saw_the_flag_moments_ago_skips_the_check(settings, monkeypatch):
    from webhooks_app import services

    settings.MKTX_INBOUND_DRAIN_GRACE = 10.0
    calls: list[bool] = []

    def flag_add() -> bool:
        calls.append(True)
        return False

    monkeypatch.setattr(services, "_flag_add", flag_add)
    monkeypatch.setattr(services, "_last_kick", 0.0)
    services._kick()
    services._kick()
    assert calls == [True]
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    services._kick()
    assert calls == [True, True]


def test_an_event_whose_worker_died_mid_processing_is_processed_after_its_lease(shop_account, dm_calls):
    deliver(FIXTURES["direct_message"])
    event = InboundEvent.objects.get()
    stuck_since = timezone.now() - timedelta(minutes=11)
    InboundEvent.objects.filter(pk=event.pk).update(status="processing", claimed_at=stuck_since, attempts=1)

    assert inbound_events_sweep(now=stuck_since + timedelta(minutes=5)) == {}  # lease still held: left alone
    assert inbound_events_sweep(now=timezone.now() + timedelta(minutes=2)) == {"processed": 1}
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 2)
    assert len(dm_calls) == 1


class Crash(BaseException):
    """The worker process dying (or losing its database) mid-processing: nothing after this point runs."""


def test_an_event_whose_worker_dies_mid_processing_is_taken_again_shortly_with_nothing_half_written(
    shop_account, monkeypatch
):
    # found by bench/chaos.py: PostgreSQL stopped in a webhook burst left the events being processed `processing`
    # for the 10-minute lease; now the handler's writes roll back with the outcome, the attempt stays counted, and
    # the event is taken again CLAIM_GAP after its claim (not at once by a drain: another worker may hold it)
    from webhooks_app import services

    calls: list[str] = []

    def dying(event, account):
        Account.objects.filter(pk=account.pk).update(username="half_written")
        raise Crash

    monkeypatch.setattr(services, "_kick", lambda: None)  # stored; no drain yet
    deliver(FIXTURES["direct_message"])
    event = InboundEvent.objects.get()
    dm_handler_set(monkeypatch, dying)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        with pytest.raises(Crash):
            services.inbound_event_process(event_id=event.pk)
        event.refresh_from_db()
        assert (event.status, event.attempts) == ("pending", 1)
        assert Account.objects.get(pk=shop_account.pk).username == "goodgo_shop"  # the handler's write rolled back
        dm_handler_set(monkeypatch, lambda event, account: calls.append(event.event_id))
        assert services.inbound_events_drain() == {}  # just claimed: left alone, no spinning on it
        assert services.inbound_event_process(event_id=event.pk) is None
        clock.shift(services.CLAIM_GAP + timedelta(seconds=1))
        assert services.inbound_events_drain() == {"processed": 1}
    event.refresh_from_db()
    assert (event.status, event.attempts, len(calls)) == ("processed", 2, 1)


def test_an_event_its_workers_die_on_every_time_fails_after_the_last_attempt(shop_account, monkeypatch):
    from webhooks_app import services

    def dying(event, account):
        raise Crash

    monkeypatch.setattr(services, "_kick", lambda: None)
    deliver(FIXTURES["direct_message"])
    event = InboundEvent.objects.get()
    dm_handler_set(monkeypatch, dying)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(services.MAX_ATTEMPTS):
            with pytest.raises(Crash):
                services.inbound_event_process(event_id=event.pk)
            clock.shift(services.CLAIM_GAP + timedelta(seconds=1))
        assert services.inbound_event_process(event_id=event.pk) == "failed"
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("failed", services.MAX_ATTEMPTS + 1)
    assert "no more retries" in event.status_reason
    assert event.next_attempt_at is None  # the sweep does not take it again


@pytest.mark.django_db(transaction=True)
def test_a_drain_passes_an_event_another_worker_is_processing_without_waiting_for_it(shop_account, monkeypatch):
    # found by bench/load.py: drains waited on each other's row locks, one behind the other, and processed 9 events
    # a second between them; a claim now skips a locked row
    import time

    from django.db import connection

    from tests.lock_helpers import row_locked
    from webhooks_app import services

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite takes one writer at a time)")
    monkeypatch.setattr(services, "_kick", lambda: None)
    deliver(FIXTURES["direct_message"])
    event = InboundEvent.objects.get()
    with row_locked(InboundEvent, event.pk):  # another worker processing it
        started = time.monotonic()
        assert services.inbound_event_process(event_id=event.pk) is None
        assert time.monotonic() - started < 2  # passed it by, did not wait for the lock
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("pending", 0)  # nothing counted against it
