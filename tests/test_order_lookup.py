"""The order lookup (chatbot/order_lookup.py) against a local lookup server in a thread: the body and the signature
as the merchant's server sees and verifies them, the answer parsed, and each failure (a non-2xx, invalid JSON, a
server slower than 3 s, a private address, no URL) a result with its reason, never an exception. The secret is in
no log line."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chatbot.ai_settings import ai_settings_update
from chatbot.models import AISettings
from chatbot.order_lookup import DEADLINE_SECONDS, order_lookup, signature
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

SECRET = "lookup-secret-5e2a"
SHIPPED = {
    "status": "shipped",
    "shippedAt": "2026-01-15",
    "expectedAt": "2026-01-20T09:00:00Z",
    "trackingUrl": "https://track.example/ZX123",
}


class LookupServer:
    """A merchant's order lookup: it verifies each request's signature with its own copy of the secret (401 when
    it does not match, as a merchant's server should) and answers by path."""

    def __init__(self, secret: str = SECRET) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
                verified = hmac.compare_digest(expected, self.headers.get("X-Mktx-Signature", ""))
                owner.requests.append(
                    {"path": self.path, "raw": raw, "headers": dict(self.headers), "verified": verified}
                )
                with contextlib.suppress(OSError):  # the client gave up: what the deadline test wants
                    owner.answer(self, verified)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, verified: bool) -> None:
        routes: dict[str, tuple[int, bytes]] = {
            "/shipped": (200, json.dumps(SHIPPED).encode()),
            "/processing": (200, b'{"status": "processing", "shippedAt": null, "expectedAt": "2026-02-30"}'),
            "/boom": (500, b'{"error": "database down"}'),
            "/missing": (404, b'{"error": "no such order"}'),
            "/html": (200, b"<html>not json</html>"),
            "/list": (200, b'[{"status": "shipped"}]'),
            "/no-status": (200, b'{"shippedAt": "2026-01-15"}'),
            "/huge": (200, json.dumps({"status": "x", "pad": "y" * 70_000}).encode()),
        }
        if handler.path == "/slow":
            time.sleep(DEADLINE_SECONDS + 1.5)
        status, body = routes.get(handler.path, (200, json.dumps(SHIPPED).encode()))
        if not verified:
            status, body = 401, b'{"error": "bad signature"}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lookup_server() -> Iterator[LookupServer]:
    server = LookupServer()
    yield server
    server.close()


@pytest.fixture
def private_allowed(settings: Any) -> None:
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True  # the lookup server listens on 127.0.0.1


@pytest.fixture
def contact(merchant: Any) -> Any:
    return ContactFactory.create(account__merchant=merchant, username="jane_doe")


def configured(merchant: Any, url: str, secret: str = SECRET) -> AISettings:
    return ai_settings_update(merchant_id=merchant.id, changes={"order_lookup_url": url, "order_lookup_secret": secret})


# --- the request ---------------------------------------------------------------------------------------------------


def test_it_posts_the_order_and_the_contact_signed_with_the_secret(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/shipped")

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert result.ok, result.reason
    [request] = lookup_server.requests
    assert request["path"] == "/shipped"
    assert request["verified"] is True
    expected_body = {"orderId": "12345", "contact": {"id": str(contact.id), "username": "jane_doe"}}
    assert json.loads(request["raw"]) == expected_body
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Mktx-Signature"] == signature(request["raw"], SECRET)


def test_the_merchants_server_refuses_a_request_signed_with_another_secret(
    lookup_server, private_allowed, merchant, contact
):
    settings = configured(merchant, f"{lookup_server.url}/shipped", secret="not-the-merchants-secret")

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert lookup_server.requests[0]["verified"] is False
    assert (result.order, result.reason) == (None, "http_401")


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body():
    body = b'{"orderId":"1","contact":{"id":"c","username":"u"}}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(body, "k") == f"sha256={expected}"
    assert signature(body + b" ", "k") != signature(body, "k")


# --- the answer ----------------------------------------------------------------------------------------------------


def test_it_reads_the_status_the_dates_and_the_tracking_url(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/shipped")

    order = order_lookup(settings=settings, order_id="12345", contact=contact).order

    assert order is not None
    assert order.status == "shipped"
    assert order.shipped_at == date(2026, 1, 15)
    assert order.expected_at == date(2026, 1, 20)
    assert order.tracking_url == "https://track.example/ZX123"


def test_missing_or_impossible_dates_are_left_out(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/processing")

    order = order_lookup(settings=settings, order_id="777", contact=contact).order

    assert order is not None
    assert (order.status, order.shipped_at, order.expected_at, order.tracking_url) == ("processing", None, None, "")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/boom", "http_500"),
        ("/missing", "http_404"),
        ("/html", "invalid_json"),
        ("/list", "invalid_reply: not an object"),
        ("/no-status", "invalid_reply: no status"),
    ],
)
def test_a_failed_answer_is_a_result_with_its_reason(lookup_server, private_allowed, merchant, contact, path, reason):
    settings = configured(merchant, f"{lookup_server.url}{path}")

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert (result.order, result.reason) == (None, reason)
    assert len(lookup_server.requests) == 1


def test_an_answer_over_64_kb_is_refused(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/huge")

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert result.order is None
    assert result.reason.startswith("unreachable") and "64000" in result.reason


def test_a_server_slower_than_3_seconds_is_given_up_on_in_time(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/slow")
    started = time.monotonic()

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    elapsed = time.monotonic() - started
    assert result.order is None
    assert result.reason.startswith("timeout"), result.reason
    assert DEADLINE_SECONDS - 0.2 < elapsed < DEADLINE_SECONDS + 1


# --- refused before any request -------------------------------------------------------------------------------------


def test_a_private_address_is_refused_when_private_addresses_are_not_allowed(
    lookup_server, settings, merchant, contact
):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    row = configured(merchant, f"{lookup_server.url}/shipped")

    result = order_lookup(settings=row, order_id="12345", contact=contact)

    assert result.order is None
    assert result.reason.startswith("unreachable") and "non-public" in result.reason
    assert lookup_server.requests == []


def test_without_a_url_there_is_no_lookup(merchant, contact):
    result = order_lookup(settings=AISettings(merchant_id=merchant.id), order_id="12345", contact=contact)
    assert (result.order, result.reason) == (None, "not_configured")


def test_an_unreachable_server_is_a_result_not_an_exception(private_allowed, merchant, contact):
    settings = configured(merchant, "http://127.0.0.1:9/lookup")  # nothing listens on the discard port

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert result.order is None
    assert result.reason.startswith("unreachable")


def test_an_undecryptable_secret_is_a_result_not_an_exception(lookup_server, private_allowed, merchant, contact):
    settings = configured(merchant, f"{lookup_server.url}/shipped")
    settings.order_lookup_secret_encrypted = "not-a-fernet-token"

    result = order_lookup(settings=settings, order_id="12345", contact=contact)

    assert (result.order, result.reason) == (None, "secret_unreadable")
    assert lookup_server.requests == []


# --- logs ----------------------------------------------------------------------------------------------------------


def test_the_log_names_the_order_and_the_outcome_never_the_secret(
    lookup_server, private_allowed, merchant, contact, caplog
):
    with caplog.at_level(logging.DEBUG):
        shipped = configured(merchant, f"{lookup_server.url}/shipped")
        order_lookup(settings=shipped, order_id="12345", contact=contact)
        failing = configured(merchant, f"{lookup_server.url}/boom")
        order_lookup(settings=failing, order_id="67890", contact=contact)

    lines = [r.getMessage() for r in caplog.records if r.name == "mktx.chatbot"]
    assert any("12345" in line and "shipped" in line for line in lines)
    assert any("67890" in line and "http_500" in line for line in lines)
    assert SECRET not in caplog.text
    assert shipped.order_lookup_secret_encrypted not in caplog.text


# --- the bot that uses it --------------------------------------------------------------------------------------------


def test_the_bot_answers_an_order_question_from_the_merchants_lookup(lookup_server, private_allowed, merchant, contact):
    from chatbot.bot import bot_answer
    from tests.factories import ConversationFactory

    configured(merchant, lookup_server.url + "/shipped")
    conversation = ConversationFactory.create(contact=contact)
    answer = bot_answer(conversation=conversation, text="where is my order #12345?", send=False)
    assert answer.response == (
        "Order #12345 was shipped on January 15 and is expected on January 20. "
        "You can track it here: https://track.example/ZX123"
    )
    assert answer.requires_escalation is False and answer.intent == "order_status_query"
    assert json.loads(lookup_server.requests[0]["raw"])["orderId"] == "12345" and lookup_server.requests[0]["verified"]
    conversation.refresh_from_db()
    assert conversation.ai_status == "none"


def test_when_the_lookup_fails_the_bot_says_it_will_check_and_hands_over(
    lookup_server, private_allowed, merchant, contact
):
    from chatbot.bot import bot_answer
    from tests.factories import ConversationFactory

    configured(merchant, lookup_server.url + "/boom")
    conversation = ConversationFactory.create(contact=contact)
    answer = bot_answer(conversation=conversation, text="đơn hàng 12345 của mình đâu rồi?", send=False)
    assert answer.requires_escalation is True and answer.escalation_reason == "order_lookup"
    assert "12345" in answer.response and answer.response.startswith("Mình sẽ kiểm tra")
    conversation.refresh_from_db()
    assert (conversation.ai_status, conversation.ai_escalation_reason) == ("escalated", "order_lookup")
