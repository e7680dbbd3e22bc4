"""The sandbox behaves like X for a real X client (tweepy) and for signed webhooks."""

from __future__ import annotations

import time

import pytest
import requests
import tweepy
from requests_oauthlib import OAuth1

from tests.conftest import CONSUMER_KEY, CONSUMER_SECRET
from xsandbox.webhooks import signature


class SandboxSession(requests.Session):
    """tweepy has X's host in code: rewrite it to the sandbox before the request is signed."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        return super().request(method, url.replace("https://api.twitter.com", self.base_url), *args, **kwargs)


def tweepy_client(sandbox, user) -> tweepy.Client:
    client = tweepy.Client(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        access_token=user["oauthToken"],
        access_token_secret=user["oauthTokenSecret"],
    )
    client.session = SandboxSession(sandbox.url)
    return client


def test_tweepy_get_me_answers_the_tokens_user(sandbox):
    shop = sandbox.user("goodgo_shop", "GoodGo Official")
    me = tweepy_client(sandbox, shop).get_me(user_auth=True, user_fields=["profile_image_url"])
    assert me.data.id == int(shop["id"])
    assert me.data.username == "goodgo_shop"
    assert me.data.name == "GoodGo Official"


def test_tweepy_create_direct_message_stores_the_dm(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    response = tweepy_client(sandbox, shop).create_direct_message(
        participant_id=int(john["id"]), text="Your order shipped", user_auth=True
    )
    low, high = sorted([shop["id"], john["id"]], key=int)
    assert response.data["dm_conversation_id"] == f"{low}-{high}"
    assert [(d["id"], d["text"]) for d in sandbox.dms(senderId=shop["id"])] == [
        (response.data["dm_event_id"], "Your order shipped")
    ]


def test_tweepy_sees_429_as_too_many_requests_with_the_reset_time(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.limits(dm15m=2)
    client = tweepy_client(sandbox, shop)
    for n in range(2):
        client.create_direct_message(participant_id=int(john["id"]), text=f"hi {n}", user_auth=True)

    with pytest.raises(tweepy.TooManyRequests) as error:
        client.create_direct_message(participant_id=int(john["id"]), text="one too many", user_auth=True)

    reset = int(error.value.response.headers["x-rate-limit-reset"])
    assert time.time() < reset <= time.time() + 15 * 60 + 2
    assert error.value.response.headers["x-rate-limit-remaining"] == "0"
    assert len(sandbox.dms(senderId=shop["id"])) == 2


def test_unknown_forged_and_revoked_tokens_get_401(sandbox):
    shop = sandbox.user("goodgo_shop")
    me = sandbox.url + "/2/users/me"
    good = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    wrong_secret = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], "not-the-secret")
    wrong_app = OAuth1(CONSUMER_KEY, "not-the-app-secret", shop["oauthToken"], shop["oauthTokenSecret"])
    unknown = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, "123-unknown", "x")

    assert requests.get(me, auth=good, timeout=5).status_code == 200
    for auth in (wrong_secret, wrong_app, unknown, None):
        response = requests.get(me, auth=auth, timeout=5)
        assert response.status_code == 401
        assert response.json()["title"] == "Unauthorized"

    sandbox.revoke(shop["id"])
    assert requests.get(me, auth=good, timeout=5).status_code == 401


def test_every_api_answer_carries_rate_limit_headers(sandbox):
    shop = sandbox.user("goodgo_shop")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    response = requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5)
    assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(response.headers)


def test_the_24h_limit_holds_independently_of_the_15_minute_window(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.limits(dm15m=100, dm24h=3)
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    url = f"{sandbox.url}/2/dm_conversations/with/{john['id']}/messages"
    statuses = [requests.post(url, json={"text": f"m{i}"}, auth=auth, timeout=5).status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]


def test_dm_validation_follows_x(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    url = f"{sandbox.url}/2/dm_conversations/with/{john['id']}/messages"
    assert requests.post(url, json={}, auth=auth, timeout=5).status_code == 400
    assert requests.post(url, json={"text": "x" * 10_001}, auth=auth, timeout=5).status_code == 400
    bad_media = {"attachments": [{"media_id": "42"}]}
    assert requests.post(url, json=bad_media, auth=auth, timeout=5).status_code == 400
    problem = requests.post(url, json={}, auth=auth, timeout=5).json()
    assert set(problem) >= {"title", "detail", "type", "status"}


def test_media_upload_gives_an_id_usable_as_a_dm_attachment(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    upload = requests.post(
        sandbox.url + "/2/media/upload",
        files={"media": ("a.png", b"\x89PNG fake", "image/png")},
        data={"media_category": "dm_image"},
        auth=auth,
        timeout=5,
    )
    assert upload.status_code == 200
    media = upload.json()["data"]
    assert media["media_key"] == f"3_{media['id']}"
    sent = requests.post(
        f"{sandbox.url}/2/dm_conversations/with/{john['id']}/messages",
        json={"text": "see attached", "attachments": [{"media_id": media["id"]}]},
        auth=auth,
        timeout=5,
    )
    assert sent.status_code == 201
    assert sandbox.dms(senderId=shop["id"])[0]["mediaIds"] == [media["id"]]


def test_faults_answer_the_given_status_the_given_number_of_times(sandbox):
    shop = sandbox.user("goodgo_shop")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    sandbox.fault(method="GET", pathPrefix="/2/users/me", status=503, times=2)
    statuses = [requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    sandbox.fault(method="GET", pathPrefix="/2/users", status=429, times=1)
    limited = requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5)
    assert limited.status_code == 429 and "x-rate-limit-reset" in limited.headers


def test_a_fault_with_a_rate_takes_that_share_of_the_calls_at_random(sandbox):
    shop = sandbox.user("goodgo_shop")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    sandbox.fault(method="GET", pathPrefix="/2/users/me", status=503, times=1000, rate=0.25)
    with requests.Session() as session:
        statuses = [session.get(sandbox.url + "/2/users/me", auth=auth, timeout=5).status_code for _ in range(200)]
    refused = statuses.count(503)  # the rest pass through to X's own answer (200, then its 429 after 75 calls)
    assert set(statuses) <= {200, 429, 503} and statuses.count(200) >= 40
    assert 25 <= refused <= 80  # 50 expected; far outside this the dice are not rolled per call
    listed = requests.get(sandbox.url + "/_sandbox/faults", timeout=5).json()
    assert [(f["taken"], f["times"]) for f in listed] == [(refused, 1000 - refused)]
    assert requests.delete(sandbox.url + "/_sandbox/faults", timeout=5).json() == {"cleared": 1}
    assert requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5).status_code in (200, 429)
    bad = requests.post(sandbox.url + "/_sandbox/faults", json={"status": 503, "rate": 0}, timeout=5)
    assert bad.status_code == 400 and "rate" in bad.text


def test_a_timeout_fault_hangs_past_the_clients_timeout(sandbox):
    shop = sandbox.user("goodgo_shop")
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    sandbox.fault(method="GET", pathPrefix="/2/users/me", mode="timeout", seconds=2, times=1)
    with pytest.raises(requests.Timeout):
        requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=0.3)


def test_signatures_match_xs_published_test_vector():
    assert (
        signature("test", b'{"test_number":1,"test_string":"two"}')
        == "sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI="
    )


def test_state_survives_a_restart(tmp_path):
    from xsandbox.core import Sandbox

    state = str(tmp_path / "state.json")
    first = Sandbox(consumer_key="k", consumer_secret="s", state_file=state)
    shop = first.create_user("goodgo_shop", "GoodGo")
    first.register_webhook("http://127.0.0.1:9/hook", check=False)
    first.close()

    second = Sandbox(consumer_key="k", consumer_secret="s", state_file=state)
    assert second.token_secret(shop["oauthToken"]) == shop["oauthTokenSecret"]
    assert [w["url"] for w in second.list_webhooks()["data"]] == ["http://127.0.0.1:9/hook"]
    second.close()


def test_creating_an_existing_username_answers_the_same_user_with_a_working_token(sandbox):
    first = sandbox.user("goodgo_shop", "GoodGo")
    again = sandbox.user("goodgo_shop", "GoodGo")
    assert again["id"] == first["id"]
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, again["oauthToken"], again["oauthTokenSecret"])
    assert requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5).status_code == 200


class _Receiver:
    """A tiny webhook endpoint that answers X's CRC and records signed deliveries."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        received: list[tuple[bytes, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                token = parse_qs(urlsplit(self.path).query)["crc_token"][0]
                body = json.dumps({"response_token": signature(CONSUMER_SECRET, token.encode())}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((body, self.headers["x-twitter-webhooks-signature"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_webhook_registration_runs_the_crc_and_api_sends_are_echoed_signed_to_the_sender(sandbox):
    import json

    receiver = _Receiver()
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    bearer = {"Authorization": "Bearer test-bearer-token"}
    registered = requests.post(sandbox.url + "/2/webhooks", json={"url": receiver.url}, headers=bearer, timeout=10)
    assert registered.status_code == 200, registered.text
    webhook_id = registered.json()["data"]["id"]
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    subscribe = f"{sandbox.url}/2/account_activity/webhooks/{webhook_id}/subscriptions/all"
    assert requests.post(subscribe, auth=auth, timeout=5).status_code == 200

    sent = tweepy_client(sandbox, shop).create_direct_message(participant_id=int(john["id"]), text="hi", user_auth=True)
    sandbox.wait_for(lambda: receiver.received)

    body, sig = receiver.received[0]
    assert sig == signature(CONSUMER_SECRET, body)
    payload = json.loads(body)
    assert payload["for_user_id"] == shop["id"]
    event = payload["direct_message_events"][0]
    assert event["id"] == sent.data["dm_event_id"]
    assert event["message_create"]["sender_id"] == shop["id"]
    assert set(payload["users"]) == {shop["id"], john["id"]}
    receiver.server.shutdown()


def test_webhook_registration_fails_when_the_crc_is_wrong(sandbox):
    bearer = {"Authorization": "Bearer test-bearer-token"}
    response = requests.post(
        sandbox.url + "/2/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=bearer, timeout=10
    )
    assert response.status_code == 400
    assert "CRC" in response.json()["detail"]
    wrong_app = {"Authorization": "Bearer not-the-token"}
    assert requests.get(sandbox.url + "/2/webhooks", headers=wrong_app, timeout=5).status_code == 401
