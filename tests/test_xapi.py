"""The X API client against the sandbox over real HTTP: typed errors, retries, timeouts, rate-limit memory."""

from __future__ import annotations

import socket
import time

import pytest

from mktx.xapi import (
    RateLimit,
    XBadRequest,
    XClient,
    XForbidden,
    XInvalidToken,
    XRateLimited,
    XServerError,
    XTimeout,
    XUnavailable,
    last_rate_limit,
)
from mktx.xapi.errors import error_for

pytestmark = pytest.mark.django_db


def client_for(user: dict, rate_key: str | None = "acct-1") -> XClient:
    return XClient(user["oauthToken"], user["oauthTokenSecret"], rate_key=rate_key)


def test_get_me_and_send_dm_over_http(sandbox):
    shop, john = sandbox.user("goodgo_shop", "GoodGo Official"), sandbox.user("customer_john")
    client = client_for(shop)

    me = client.get_me()
    sent = client.send_dm(john["id"], text="hello")

    assert (me.id, me.username, me.name) == (shop["id"], "goodgo_shop", "GoodGo Official")
    assert sent.dm_event_id == sandbox.dms(senderId=shop["id"])[0]["id"]
    assert [e["text"] for e in client.dm_events(john["id"])] == ["hello"]


def test_a_dm_send_answers_xs_rate_limit_headers_on_the_sent_dm(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    client = client_for(shop, "acct-A")
    client.send_dm(john["id"], text="one")

    sent = client.send_dm(john["id"], text="two")

    assert sent.rate_limit is not None
    assert (sent.rate_limit.limit, sent.rate_limit.remaining) == (15, 13)
    assert sent.rate_limit.reset > time.time()


def test_a_dm_send_writes_nothing_to_the_cache(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    client_for(shop, "acct-A").send_dm(john["id"], text="one")
    assert last_rate_limit("acct-A", "dm_send") is None


def test_an_error_answer_of_a_send_reaches_on_rate_limit_with_its_headers(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.limits(dm15m=1)
    client = client_for(shop)
    heard: list[RateLimit] = []
    client.send_dm(john["id"], text="one", on_rate_limit=heard.append)
    with pytest.raises(XRateLimited) as error:
        client.send_dm(john["id"], text="two", on_rate_limit=heard.append)
    assert [(r.limit, r.remaining) for r in heard] == [(1, 0), (1, 0)]
    assert error.value.reset_at is not None and heard[1].reset == int(error.value.reset_at.timestamp())


def test_the_last_rate_limit_headers_of_other_calls_are_kept_per_account(sandbox):
    shop = sandbox.user("goodgo_shop")
    client_for(shop, "acct-A").get_me()
    client_for(shop, "acct-A").get_me()

    limit = last_rate_limit("acct-A", "users_me")
    assert limit is not None
    assert (limit.limit, limit.remaining) == (75, 73)
    assert limit.reset > time.time()
    assert last_rate_limit("acct-B", "users_me") is None


def test_dm_events_ask_x_for_the_sender_and_time_of_each_event(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    client = client_for(shop)
    client.send_dm(john["id"], text="hello")
    urls: list[str] = []
    client.session.hooks["response"].append(lambda response, *args, **kwargs: urls.append(response.request.url))

    (event,) = client.dm_events(john["id"])

    assert (event["sender_id"], event["text"]) == (shop["id"], "hello")
    assert event["created_at"]
    (url,) = urls
    assert "dm_event.fields=created_at%2Csender_id" in url  # real X answers id, event_type, text without them


def test_a_revoked_token_is_invalid_token(sandbox):
    shop = sandbox.user("goodgo_shop")
    sandbox.revoke(shop["id"])
    with pytest.raises(XInvalidToken):
        client_for(shop).get_me()


def test_429_is_rate_limited_with_the_reset_time(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.limits(dm15m=1)
    client = client_for(shop)
    client.send_dm(john["id"], text="one")
    with pytest.raises(XRateLimited) as error:
        client.send_dm(john["id"], text="two")
    assert error.value.reset_at is not None
    assert error.value.reset_at.timestamp() > time.time()
    assert error.value.status == 429


def test_403_is_forbidden_and_final(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=403, times=1)
    with pytest.raises(XForbidden) as error:
        client_for(shop).send_dm(john["id"], text="hi")
    assert error.value.code == 349
    assert not error.value.retryable


def test_idempotent_reads_are_retried_after_5xx(sandbox):
    shop = sandbox.user("goodgo_shop")
    sandbox.fault(method="GET", pathPrefix="/2/users/me", status=503, times=2)
    assert client_for(shop).get_me().id == shop["id"]


def test_reads_give_up_after_their_retries(sandbox):
    shop = sandbox.user("goodgo_shop")
    sandbox.fault(method="GET", pathPrefix="/2/users/me", status=500, times=3)
    with pytest.raises(XServerError):
        client_for(shop).get_me()


def test_a_dm_send_is_never_retried_by_the_client(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    with pytest.raises(XServerError):
        client_for(shop).send_dm(john["id"], text="hi")
    assert sandbox.dms(senderId=shop["id"]) == []


def test_a_timeout_is_a_typed_timeout(sandbox, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1.5, times=1)
    with pytest.raises(XTimeout):
        client_for(shop).send_dm(john["id"], text="hi")


def test_an_unreachable_x_is_unavailable(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.X_API_BASE_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(XUnavailable) as error:
        XClient("1-token", "secret").get_me()
    assert not isinstance(error.value, XTimeout)


def test_media_upload_then_send_with_it(sandbox):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    client = client_for(shop)
    media_id = client.upload_media(b"\x89PNG...", "image/png", "a.png")
    client.send_dm(john["id"], text="look", media_id=media_id)
    assert sandbox.dms(senderId=shop["id"])[0]["mediaIds"] == [media_id]


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (
            401,
            {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
            XInvalidToken,
            None,
        ),
        (401, {"errors": [{"code": 89, "message": "Invalid or expired token."}]}, XInvalidToken, 89),
        (429, {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}, XRateLimited, 88),
        (
            403,
            {"errors": [{"code": 226, "message": "This request looks like it might be automated."}]},
            XForbidden,
            226,
        ),
        (
            403,
            {"title": "Forbidden", "detail": "You cannot send messages to this user.", "status": 403},
            XForbidden,
            None,
        ),
        (
            400,
            {"title": "Invalid Request", "detail": "One or more parameters are invalid.", "status": 400},
            XBadRequest,
            None,
        ),
        (502, None, XServerError, None),
        (503, "<html>down</html>", XServerError, None),
    ],
)
def test_errors_are_typed_from_both_shapes(status, body, expected, code):
    error = error_for(status, body, {"x-rate-limit-reset": str(int(time.time()) + 30)})
    assert type(error) is expected
    assert error.code == code
    assert error.message
    if expected is XRateLimited:
        assert error.reset_at is not None
