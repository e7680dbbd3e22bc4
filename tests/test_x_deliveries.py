"""X retries a webhook delivery that did not get a 2xx within about 3 s, and may deliver an event twice (issue 16):
the sandbox does both (retries after 1, 4, 16 s, shortened here; `POST /_sandbox/duplicate`), and the service
processes each event once however often it comes."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from contacts.models import Message
from webhooks_app import views

pytestmark = pytest.mark.django_db


class Answers(BaseHTTPRequestHandler):
    """A webhook that answers from a script: (status, seconds to wait first) per request, then 200."""

    script: list[tuple[int, float]] = []
    seen: list[float] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Answers.seen.append(time.monotonic())
        status, wait = Answers.script.pop(0) if Answers.script else (200, 0.0)
        time.sleep(wait)
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:  # the sandbox gave up waiting
            pass


@pytest.fixture
def hook(sandbox):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Answers.script, Answers.seen = [], []
    url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    requests.post(f"{sandbox.url}/_sandbox/webhooks", json={"url": url}, timeout=10)
    yield url
    server.shutdown()


def subscribe(sandbox: Any, user: dict[str, Any]) -> None:
    """The user's account subscribed to the test's webhook, as the service does when it connects one."""
    from requests_oauthlib import OAuth1

    from tests.conftest import BEARER_TOKEN, CONSUMER_KEY, CONSUMER_SECRET

    headers = {"Authorization": f"Bearer {BEARER_TOKEN}"}
    (webhook,) = requests.get(f"{sandbox.url}/2/webhooks", headers=headers, timeout=10).json()["data"]
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, user["oauthToken"], user["oauthTokenSecret"])
    url = f"{sandbox.url}/2/account_activity/webhooks/{webhook['id']}/subscriptions/all"
    assert requests.post(url, auth=auth, timeout=10).status_code == 200


def attempts(sandbox: Any, count: int) -> list[dict[str, Any]]:
    return sandbox.wait_for(lambda: (found := sandbox.deliveries()) and len(found) >= count and found)


def test_a_failed_delivery_is_tried_three_more_times_then_a_2xx_ends_it(sandbox, hook):
    limits = requests.post(
        f"{sandbox.url}/_sandbox/limits", json={"retryDelays": [0.1, 0.2, 0.4], "deliveryTimeout": 0.5}, timeout=10
    ).json()
    assert limits["retryDelays"] == [0.1, 0.2, 0.4] and limits["deliveryTimeout"] == 0.5
    shop, jane = sandbox.user("shop_retry"), sandbox.user("jane_retry")
    subscribe(sandbox, shop)
    Answers.script = [(500, 0), (200, 1.0), (503, 0)]  # an error, an answer too slow, an error, then 200
    sandbox.dm(jane["id"], shop["id"], "hello")
    found = attempts(sandbox, 4)
    time.sleep(1.0)  # nothing more comes after the 2xx
    found = sandbox.deliveries()
    assert [(d["attempt"], d["status"]) for d in found] == [(1, 500), (2, 0), (3, 503), (4, 200)]
    assert len({d["id"] for d in found}) == 1 and found[0]["eventIds"] == found[3]["eventIds"]
    gaps = [round(b - a, 1) for a, b in zip(Answers.seen, Answers.seen[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[2] >= 0.4


def test_an_answer_that_never_comes_is_given_up_after_three_retries(sandbox, hook):
    requests.post(f"{sandbox.url}/_sandbox/limits", json={"retryDelays": [0.05, 0.05, 0.05]}, timeout=10)
    shop, jane = sandbox.user("shop_down"), sandbox.user("jane_down")
    subscribe(sandbox, shop)
    Answers.script = [(500, 0)] * 10
    sandbox.dm(jane["id"], shop["id"], "anyone?")
    attempts(sandbox, 4)
    time.sleep(0.5)
    assert [d["attempt"] for d in sandbox.deliveries()] == [1, 2, 3, 4]
    bad = requests.post(f"{sandbox.url}/_sandbox/limits", json={"retryDelays": "soon"}, timeout=10)
    assert bad.status_code == 400 and "retryDelays" in bad.text


@pytest.mark.django_db(transaction=True)
def test_a_delivery_retried_after_a_slow_answer_and_a_duplicate_are_processed_once(
    service, sandbox, live_shop, monkeypatch
):
    requests.post(
        f"{sandbox.url}/_sandbox/limits", json={"retryDelays": [0.2, 0.2, 0.2], "deliveryTimeout": 0.5}, timeout=10
    )
    store, slow = views.inbound_events_store, [True]

    def slow_once(**kwargs: Any) -> int:
        received = store(**kwargs)
        if slow:
            slow.clear()
            time.sleep(1.0)  # stored, but answered after the sandbox stopped waiting: X will try again
        return received

    monkeypatch.setattr(views, "inbound_events_store", slow_once)
    jane = sandbox.user("jane_twice")
    sandbox.dm(jane["id"], live_shop["id"], "only once, please")
    found = attempts(sandbox, 2)
    assert [d["attempt"] for d in found][:2] == [1, 2] and found[0]["status"] == 0 and found[1]["status"] == 200
    again = requests.post(f"{sandbox.url}/_sandbox/duplicate", json={"deliveryId": found[0]["id"]}, timeout=10)
    assert again.status_code == 200 and again.json()["delivery"]["status"] == 200
    assert again.json()["delivery"]["eventIds"] == found[0]["eventIds"]
    sandbox.wait_for(lambda: Message.objects.filter(direction="inbound").exists())
    time.sleep(0.5)
    assert list(Message.objects.filter(direction="inbound").values_list("content", flat=True)) == ["only once, please"]
    by_event = requests.post(f"{sandbox.url}/_sandbox/duplicate", json={"eventId": found[0]["eventIds"][0]}, timeout=10)
    assert by_event.status_code == 200 and by_event.json()["delivery"]["eventIds"] == found[0]["eventIds"]
    time.sleep(0.3)
    assert Message.objects.filter(direction="inbound").count() == 1
    for wrong in ({"deliveryId": "d999999"}, {"eventId": "1"}, {}):
        assert requests.post(f"{sandbox.url}/_sandbox/duplicate", json=wrong, timeout=10).status_code == 400
