"""The one outbound path, over real HTTP against the sandbox: limits, quota, X failures, attachments."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone

from contacts.models import Message
from contacts.services.contacts import XProfile
from contacts.services.inbound import dm_record
from contacts.services.outbound import message_send
from mktx.accounts.models import Account
from mktx.api.errors import ApiError, RateLimited
from mktx.xapi import RateLimit
from tests.campaign_helpers import connect

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(api, sandbox):
    return connect(api, sandbox)


@pytest.fixture
def john(sandbox, shop):
    """A customer who DMed the shop: contact and conversation made by the real inbound path."""
    user = sandbox.user("customer_john", "John Doe")
    message = dm_record(
        account=shop["account"],
        x_event_id="900000000000000001",
        sender_id=user["id"],
        recipient_id=shop["id"],
        text="Hi, I have a question",
        sent_at=timezone.now(),
        profiles={user["id"]: XProfile(id=user["id"], username="customer_john", name="John Doe")},
    )
    assert message is not None
    return {**user, "conversation": message.conversation}


def send(api, conversation, **payload):
    return api.post(f"/api/v1/mkt-x/conversations/{conversation.id}/messages", payload, format="json")


def test_a_reply_is_sent_and_recorded_with_xs_event_id(api, sandbox, shop, john):
    response = send(api, john["conversation"], content="Your order shipped")
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    (dm,) = sandbox.dms(senderId=shop["id"])
    assert data["twitterMessageId"] == dm["id"]
    assert (dm["recipientId"], dm["text"]) == (john["id"], "Your order shipped")
    assert (data["status"], data["direction"], data["origin"]) == ("sent", "outbound", "staff")
    john["conversation"].refresh_from_db()
    assert john["conversation"].message_count == 2


def test_10001_characters_are_refused_and_nothing_is_sent_or_stored(api, sandbox, shop, john):
    response = send(api, john["conversation"], content="x" * 10_001)
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "content"
    assert sandbox.dms(senderId=shop["id"]) == []
    assert not Message.objects.filter(direction="outbound").exists()
    assert send(api, john["conversation"], content="x" * 10_000).status_code == 200


def test_an_empty_message_is_refused(api, john):
    response = send(api, john["conversation"], content="   ")
    assert response.status_code == 400 and response.json()["details"]["field"] == "content"


def test_a_429_from_x_is_rate_limit_exceeded_with_the_reset_time(api, sandbox, shop, john):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=429, times=1)
    response = send(api, john["conversation"], content="hello")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["details"]["reason"] == "x_rate_limited" and "resetAt" in body["details"]
    failed = Message.objects.get(direction="outbound")
    assert (failed.status, failed.error_code) == ("failed", "RateLimited")


def test_x_dm_limits_from_the_sandbox_map_to_429(api, sandbox, shop, john):
    sandbox.limits(dm15m=1)
    assert send(api, john["conversation"], content="one").status_code == 200
    assert send(api, john["conversation"], content="two").status_code == 429


def test_the_accounts_daily_quota_is_enforced_before_calling_x(api, sandbox, shop, john, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 2
    assert [send(api, john["conversation"], content=f"m{i}").status_code for i in range(2)] == [200, 200]

    response = send(api, john["conversation"], content="one too many")

    assert response.status_code == 429
    details = response.json()["details"]
    assert (details["reason"], details["limit"], details["used"]) == ("daily_quota", 2, 2)
    assert details["resetAt"] > timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert int(response["Retry-After"]) > 23 * 3600
    assert len(sandbox.dms(senderId=shop["id"])) == 2
    assert Message.objects.filter(direction="outbound").count() == 2


def test_the_quota_is_a_rolling_24_hours(sandbox, shop, john, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 1
    conversation = john["conversation"]
    with time_machine.travel(timezone.now(), tick=True) as clock:
        message_send(conversation=conversation, content="yesterday", origin="staff")
        clock.shift(timedelta(hours=23, minutes=50))
        with pytest.raises(RateLimited):
            message_send(conversation=conversation, content="too soon", origin="staff")
        clock.shift(timedelta(minutes=20))  # 24 h and one 10-minute bucket (the counter's grain) after the first

        assert message_send(conversation=conversation, content="today", origin="staff").status == "sent"
    assert [dm["text"] for dm in sandbox.dms(senderId=shop["id"])] == ["yesterday", "today"]


def test_a_timeout_leaves_a_visible_failed_message_and_answers_503(api, sandbox, shop, john, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1, times=1)

    response = send(api, john["conversation"], content="are you there?")

    assert response.status_code == 503
    assert response.json()["code"] == "TWITTER_API_ERROR"
    detail = api.get(f"/api/v1/mkt-x/conversations/{john['conversation'].id}").json()["data"]
    failed = detail["messages"][-1]
    assert (failed["content"], failed["status"], failed["errorCode"]) == ("are you there?", "failed", "Timeout")


def test_a_5xx_is_502_and_the_message_is_kept_failed(api, sandbox, shop, john):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    response = send(api, john["conversation"], content="hello")
    assert response.status_code == 502
    assert Message.objects.get(direction="outbound").status == "failed"
    assert sandbox.dms(senderId=shop["id"]) == []


def test_a_403_is_400_naming_xs_reason_and_is_not_retried(api, sandbox, shop, john):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=403, times=1)
    response = send(api, john["conversation"], content="hello")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "TWITTER_API_ERROR"
    assert body["details"]["reason"] == "You cannot send messages to this user."
    assert Message.objects.get(direction="outbound").status == "failed"
    assert sandbox.dms(senderId=shop["id"]) == []


def test_an_echo_after_an_ambiguous_timeout_marks_the_failed_message_sent(sandbox, shop, john, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    # X sends the DM, then hangs past the client's timeout
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1, times=1, afterSend=True)
    conversation = john["conversation"]
    with pytest.raises(ApiError):  # the 503 of a timeout
        message_send(conversation=conversation, content="did it go?", origin="staff")
    failed = Message.objects.get(direction="outbound")
    assert failed.status == "failed"
    (dm,) = sandbox.dms(senderId=shop["id"])

    # the echo arrives: the message takes X's id instead of becoming a second copy
    dm_record(
        account=shop["account"],
        x_event_id=dm["id"],
        sender_id=shop["id"],
        recipient_id=john["id"],
        text="did it go?",
        sent_at=timezone.now(),
        profiles={},
    )
    failed.refresh_from_db()
    assert (failed.status, failed.twitter_message_id) == ("sent", dm["id"])
    assert Message.objects.filter(direction="outbound").count() == 1


def test_a_disconnected_account_cannot_send(api, shop, john):
    Account.objects.filter(pk=shop["account"].pk).update(status="inactive")
    response = send(api, john["conversation"], content="hello")
    assert response.status_code == 400
    assert response.json()["details"]["reason"] == "account_inactive"
    assert not Message.objects.filter(direction="outbound").exists()


def test_marketing_sends_skip_opted_out_contacts_but_staff_replies_go(api, sandbox, shop, john):
    from contacts.services.outbound import SendSkipped

    contact = john["conversation"].contact
    contact.opted_out = True
    contact.save()
    with pytest.raises(SendSkipped) as skipped:
        message_send(conversation=john["conversation"], content="SALE!", origin="campaign", marketing=True)
    assert skipped.value.reason == "opted_out"
    assert send(api, john["conversation"], content="About your order...").status_code == 200
    assert [d["text"] for d in sandbox.dms(senderId=shop["id"])] == ["About your order..."]


def test_an_idempotency_key_sends_once(sandbox, shop, john):
    first = message_send(conversation=john["conversation"], content="once", origin="system", idempotency_key="k1")
    second = message_send(conversation=john["conversation"], content="once", origin="system", idempotency_key="k1")
    assert first.pk == second.pk
    assert len(sandbox.dms(senderId=shop["id"])) == 1


def test_a_revoked_token_marks_the_account_error(api, sandbox, shop, john):
    sandbox.revoke(shop["id"])
    response = send(api, john["conversation"], content="hello")
    assert response.status_code == 502
    assert Account.objects.get(pk=shop["account"].pk).status == "error"


def test_replying_in_a_closed_conversation_reopens_it(api, shop, john):
    conversation = john["conversation"]
    api.put(f"/api/v1/mkt-x/conversations/{conversation.id}/close", {"reason": "resolved"}, format="json")
    assert send(api, conversation, content="One more thing").status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == "open"


# --- attachments ---------------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


class _Images:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                routes = {
                    "/ok.png": (200, "image/png", PNG),
                    "/page.html": (200, "text/html", b"<html></html>"),
                    "/huge.png": (200, "image/png", b"\x00" * (5 * 1024 * 1024 + 1)),
                }
                status, kind, body = routes.get(self.path, (404, "text/plain", b"missing"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def images(settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    server = _Images()
    yield server
    server.server.shutdown()


def test_an_image_attachment_is_fetched_uploaded_to_x_and_sent(api, sandbox, shop, john, images):
    response = send(
        api, john["conversation"], content="Tracking", attachments=[{"type": "image", "url": images.url + "/ok.png"}]
    )
    assert response.status_code == 200, response.json()
    (dm,) = sandbox.dms(senderId=shop["id"])
    assert len(dm["mediaIds"]) == 1
    media = sandbox.server.sandbox.media[dm["mediaIds"][0]]
    assert (media["size"], media["contentType"]) == (len(PNG), "image/png")


@pytest.mark.parametrize("path", ["/missing.png", "/page.html", "/huge.png"])
def test_an_attachment_that_cannot_be_used_is_400_naming_it(api, sandbox, shop, john, images, path):
    response = send(api, john["conversation"], content="x", attachments=[{"type": "image", "url": images.url + path}])
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "attachments[0].url"
    assert sandbox.dms(senderId=shop["id"]) == []
    assert not Message.objects.filter(direction="outbound").exists()


def test_attachments_inside_the_network_are_refused_by_default(api, sandbox, shop, john, images, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    response = send(api, john["conversation"], content="x", attachments=[{"url": images.url + "/ok.png"}])
    assert response.status_code == 400
    assert response.json()["details"]["reason"] == "the image could not be fetched"


def test_more_than_one_attachment_is_refused(api, john, images):
    one = {"url": images.url + "/ok.png"}
    response = send(api, john["conversation"], content="x", attachments=[one, one])
    assert response.status_code == 400 and response.json()["details"]["field"] == "attachments"


def test_a_dm_after_a_conversation_was_closed_starts_a_new_one(api, shop, john):
    closed = john["conversation"]
    api.put(f"/api/v1/mkt-x/conversations/{closed.id}/close", {"reason": "resolved"}, format="json")

    again = dm_record(
        account=shop["account"], x_event_id="900000000000000002", sender_id=john["id"], recipient_id=shop["id"],
        text="One more question", sent_at=timezone.now(), profiles={},
    )  # fmt: skip

    assert again is not None and again.conversation.pk != closed.id
    closed.refresh_from_db()
    assert closed.status == "closed"
    contact = closed.contact
    contact.refresh_from_db()
    assert contact.conversation_count == 2


def test_attachments_and_quick_reply_metadata_of_inbound_dms_are_kept(shop, john):
    recorded = dm_record(
        account=shop["account"],
        x_event_id="900000000000000003",
        sender_id=john["id"],
        recipient_id=shop["id"],
        text="this one",
        sent_at=timezone.now(),
        profiles={},
        attachment={"type": "media", "media": {"id_str": "951", "media_url_https": "https://ton.twimg.com/dm/951.jpg"}},
        quick_reply_response={"type": "options", "metadata": "size_m"},
    )
    assert recorded is not None
    message = recorded.message
    assert message.type == "image"
    assert message.attachments == [{"type": "image", "url": "https://ton.twimg.com/dm/951.jpg", "mediaId": "951"}]
    assert message.metadata == {"quickReplyResponse": {"type": "options", "metadata": "size_m"}}


def test_replaying_an_inbound_dm_stores_it_once(shop, john):
    again = dm_record(
        account=shop["account"], x_event_id="900000000000000001", sender_id=john["id"], recipient_id=shop["id"],
        text="Hi, I have a question", sent_at=timezone.now(), profiles={},
    )  # fmt: skip
    assert again is None
    assert Message.objects.count() == 1


def test_with_the_task_broker_down_a_consent_confirmation_is_sent_inline(
    sandbox, shop, john, monkeypatch, django_capture_on_commit_callbacks
):
    import socket

    from django_q.conf import Conf

    from contacts.services.consent import send_system_message_later
    from mktx import queue
    from mktx.redis import redis_breaker_reset

    # given: django-q as in production, on a Redis broker that refuses connections
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{closed_port}/0")
    queue._producer.cache_clear()
    redis_breaker_reset()
    try:
        # when: the confirmation cannot be queued
        with django_capture_on_commit_callbacks(execute=True):
            send_system_message_later(conversation_id=john["conversation"].id, text="You are unsubscribed", key="k1")
    finally:
        queue._producer.cache_clear()
        redis_breaker_reset()
    # then: it was sent here, once
    assert [dm["text"] for dm in sandbox.dms(senderId=shop["id"])] == ["You are unsubscribed"]
    assert Message.objects.filter(origin="system", status="sent").count() == 1


def test_the_caller_hears_xs_rate_limit_headers_of_the_send(sandbox, shop, john):
    heard: list[RateLimit] = []
    message = message_send(
        conversation=john["conversation"], content="Your order shipped", origin="staff", on_rate_limit=heard.append
    )
    assert message.status == "sent"
    ((limit, remaining),) = [(r.limit, r.remaining) for r in heard]
    assert (limit, remaining) == (15, 14)


def test_the_caller_hears_the_headers_of_a_429_too_once_the_message_is_failed(sandbox, shop, john):
    sandbox.limits(dm15m=1)
    message_send(conversation=john["conversation"], content="one", origin="staff")
    statuses: list[str] = []

    def heard(rate_limit: RateLimit) -> None:
        statuses.append(Message.objects.get(content="two").status)
        assert (rate_limit.limit, rate_limit.remaining) == (1, 0)

    with pytest.raises(RateLimited) as error:
        message_send(conversation=john["conversation"], content="two", origin="staff", on_rate_limit=heard)

    assert error.value.details["reason"] == "x_rate_limited"
    assert statuses == ["failed"]
