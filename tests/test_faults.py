"""Failing dependencies (issue 11, point 9 and "fault tests"): Redis refusing or silent, PostgreSQL refusing.

Redis fails open: requests, logins and signed webhooks are served within a bound, readiness says degraded, and Redis
is used again when it returns. The database is needed: a clear 503, and the service recovers by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from mktx.redis import redis_breaker_reset
from tests.factories import PASSWORD, AccountFactory, access_token
from webhooks_app import handlers
from webhooks_app.events import DirectMessageEvent
from webhooks_app.models import InboundEvent
from webhooks_app.signatures import sign

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/v1/mkt-x/accounts"
LOGIN = "/api/v1/auth/login"
HOOK = "/api/v1/mkt-x/webhooks/twitter"
BOUND = 1.0  # seconds: every request must be answered within this, Redis or not
SHOP_ID = "4337869213"
DM = json.loads((Path(__file__).parent / "fixtures" / "x_events.json").read_text())["direct_message"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_accepted = [0]


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers on them (`_accepted` counts them)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])
                _accepted[0] += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def _forwarder(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Redis coming back on `port`: a TCP relay from `port` to a real Redis."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    server.settimeout(0.05)
    stop = threading.Event()
    sockets: list[socket.socket] = [server]

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client = server.accept()[0]
            except OSError:
                continue
            upstream = socket.create_connection(target)
            sockets.extend([client, upstream])
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for sock in sockets:
            sock.close()


def _point_redis_at(settings, url: str) -> None:
    """The shared client, the cache and the key prefix on `url` (the task broker stays where it is)."""
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {"BACKEND": "mktx.redis.FailOpenRedisCache", "LOCATION": url, "KEY_PREFIX": f"faults-{uuid.uuid4()}"}
    }


@pytest.fixture(params=["refusing", "silent"])
def redis_down(request, settings) -> Iterator[str]:
    redis_breaker_reset()
    with contextlib.ExitStack() as stack:
        port = _free_port() if request.param == "refusing" else stack.enter_context(_silent_server())
        _point_redis_at(settings, f"redis://127.0.0.1:{port}/0")
        yield request.param
    redis_breaker_reset()


@pytest.fixture
def real_redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/4"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis answers at {url}")
    return url


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _deliver():
    body = json.dumps(DM).encode()
    headers = {"x-twitter-webhooks-signature": sign("test-consumer-secret", body)}
    return Client().post(HOOK, body, content_type="application/json", headers=headers)


# --- Redis ----------------------------------------------------------------------------------------------------------


def test_with_redis_down_api_requests_are_served_within_the_bound(redis_down, owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(owner))
    for _ in range(5):
        response, elapsed = _timed(lambda: client.get(ACCOUNTS))
        assert response.status_code == 200
        assert elapsed < BOUND


def test_a_silent_redis_is_not_tried_again_on_every_request(settings, owner):
    settings.MKTX_REDIS_RETRY_SECONDS = 60
    redis_breaker_reset()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(owner))
    with _silent_server() as port:
        _point_redis_at(settings, f"redis://127.0.0.1:{port}/0")
        before = _accepted[0]
        started = time.monotonic()
        for _ in range(10):
            assert client.get(ACCOUNTS).status_code == 200
        elapsed = time.monotonic() - started
        time.sleep(0.1)  # let the server thread count what reached it
        assert _accepted[0] - before == 1  # the first request found Redis silent; the breaker spared the others
    assert elapsed < BOUND
    redis_breaker_reset()


def test_with_redis_down_a_login_succeeds_within_the_bound(redis_down, owner, caplog):
    caplog.set_level("WARNING", logger="mktx.redis")
    response, elapsed = _timed(
        lambda: APIClient().post(LOGIN, {"email": owner.email, "password": PASSWORD}, format="json")
    )
    assert response.status_code == 200
    assert response.json()["data"]["accessToken"]
    assert elapsed < BOUND
    wrong, elapsed = _timed(lambda: APIClient().post(LOGIN, {"email": owner.email, "password": "no"}, format="json"))
    assert wrong.status_code == 401
    assert elapsed < BOUND
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)  # the failing open is logged


def test_with_redis_down_a_signed_webhook_is_stored_acknowledged_and_drained_later(
    redis_down, merchant, monkeypatch, django_capture_on_commit_callbacks
):
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")
    handled: list[DirectMessageEvent] = []
    table = {**handlers.HANDLERS, DirectMessageEvent: lambda event, account: handled.append(event)}
    monkeypatch.setattr("webhooks_app.services.HANDLERS", table)
    with django_capture_on_commit_callbacks(execute=True):
        response, elapsed = _timed(_deliver)
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"received": 1}}
    assert elapsed < BOUND
    event = InboundEvent.objects.get()
    assert event.status == "pending"  # nothing was queued: Redis is the broker's too
    # then: the minute sweep processes it
    from webhooks_app.services import inbound_events_sweep

    inbound_events_sweep(now=timezone.now() + timedelta(minutes=2))
    event.refresh_from_db()
    assert event.status == "processed"
    assert [e.event_id for e in handled] == ["954491830116155396"]


def test_with_redis_down_the_cache_misses_and_drops_writes(redis_down):
    from django.core.cache import cache

    started = time.monotonic()
    cache.set("k", "v", 30)
    assert cache.get("k", "default") == "default"
    assert cache.add("k", "v") is False
    assert cache.get_many(["k"]) == {}
    assert time.monotonic() - started < BOUND


def test_with_redis_down_readiness_says_degraded_counts_and_hides_the_error(redis_down, owner):
    APIClient().post(LOGIN, {"email": owner.email, "password": PASSWORD}, format="json")  # fails open at least once
    response, elapsed = _timed(lambda: Client().get("/readyz"))
    assert elapsed < BOUND
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "degraded"
    assert data["checks"]["redis"] == "degraded"
    assert data["checks"]["database"] == "ok"
    assert data["metrics"]["redisFailOpen"] >= 1
    text = response.content.decode()
    assert "Error" not in text and "refused" not in text.lower() and "127.0.0.1" not in text


def test_with_the_task_broker_on_the_down_redis_readiness_is_degraded_not_failed(redis_down, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": settings.REDIS_URL}  # production: one Redis for both
    response, elapsed = _timed(lambda: Client().get("/readyz"))
    assert elapsed < BOUND
    assert response.status_code == 200
    assert response.json()["data"]["checks"] == {"database": "ok", "redis": "degraded", "broker": "degraded"}


def test_redis_is_used_again_when_it_comes_back(settings, real_redis_url):
    # given: Redis down at an address, the limiter failing open
    settings.MKTX_REDIS_RETRY_SECONDS = 1
    settings.MKTX_LOGIN_RATE_LIMIT = (2, 60)
    settings.MKTX_LOGIN_FAILURE_LIMIT = 1000
    redis_breaker_reset()
    port = _free_port()
    _point_redis_at(settings, f"redis://127.0.0.1:{port}/0")

    def attempts(n: int) -> list[int]:
        client = APIClient()
        return [
            client.post(LOGIN, {"email": "x@shop.test", "password": "nope"}, format="json").status_code
            for _ in range(n)
        ]

    assert attempts(3) == [401, 401, 401]  # not counted: Redis is down
    assert Client().get("/readyz").json()["data"]["checks"]["redis"] == "degraded"
    # when: Redis answers on that address again
    real = redis.Redis.from_url(real_redis_url).connection_pool.connection_kwargs
    with _forwarder(port, (real.get("host", "127.0.0.1"), int(real.get("port", 6379)))):
        time.sleep(1.1)  # the breaker's retry interval
        # then: counted again, and readiness is back to ready
        assert attempts(3) == [401, 401, 429]
        ready = Client().get("/readyz").json()["data"]
        assert ready["checks"]["redis"] == "ok"
        assert ready["status"] == "ready"
    redis_breaker_reset()


@pytest.fixture
def production_queue(monkeypatch) -> Iterator[Callable[[str], None]]:
    """django-q as in production: tasks are queued, not run here, on a Redis broker at the URL given."""
    from django_q.conf import Conf

    from mktx import queue

    def point(url: str) -> None:
        monkeypatch.setattr(Conf, "SYNC", False)
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)
        queue._producer.cache_clear()

    yield point
    queue._producer.cache_clear()


def test_with_the_broker_down_queueing_a_task_fails_open_within_the_bound(
    redis_down, settings, production_queue, caplog
):
    from campaigns.queue import sender_kick_now as kick_sender
    from mktx.queue import task_enqueue

    production_queue(settings.REDIS_URL)
    queued, elapsed = _timed(lambda: task_enqueue("campaigns.tasks.run_sender", task_name="campaign-sender"))
    assert queued is False and elapsed < BOUND
    assert "could not queue campaign-sender" in caplog.text
    _, elapsed = _timed(kick_sender)  # what the API calls after a campaign start: no exception, no wait
    assert elapsed < BOUND


def test_with_the_broker_up_a_task_is_queued_on_it(settings, production_queue, real_redis_url):
    from django_q.conf import Conf

    from mktx.queue import task_enqueue

    redis_breaker_reset()
    production_queue(real_redis_url)
    key = f"django_q:{Conf.CLUSTER_NAME}:q"
    client = redis.Redis.from_url(real_redis_url)
    before = client.llen(key)
    assert task_enqueue("campaigns.tasks.run_sender", task_name="campaign-sender") is True
    assert client.llen(key) == before + 1
    client.rpop(key)  # no worker runs in the tests: take it back


# --- the database ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _database_refusing(monkeypatch) -> Iterator[None]:
    """PostgreSQL: the connection closed and pointed at a port where nothing listens. SQLite (the tests' database
    is in memory and cannot be closed): opening a cursor raises the error a missing database file gives."""
    if connection.vendor == "postgresql":
        port = connection.settings_dict["PORT"]
        connection.close()
        connection.settings_dict["PORT"] = str(_free_port())
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict["PORT"] = port
    else:

        def refuse(*args, **kwargs):
            raise sqlite3.OperationalError("unable to open database file")

        with monkeypatch.context() as patch:
            patch.setattr(connection, "create_cursor", refuse)
            yield


@pytest.mark.django_db(transaction=True)
def test_a_database_that_refuses_connections_is_a_503_and_the_service_recovers(monkeypatch, owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(owner))
    with _database_refusing(monkeypatch):
        # then: the API, the webhook receiver and readiness answer a clear 503
        response = client.get(ACCOUNTS)
        assert response.status_code == 503
        assert response.json() == {
            "success": False,
            "error": "Service temporarily unavailable: the database cannot be reached; retry shortly",
            "code": "SERVICE_UNAVAILABLE",
            "details": {},
        }
        assert response["Retry-After"] == "5"
        login = APIClient().post(LOGIN, {"email": owner.email, "password": PASSWORD}, format="json")
        assert login.status_code == 503
        hook = _deliver()
        assert hook.status_code == 503
        assert hook.json()["code"] == "SERVICE_UNAVAILABLE"
        ready = Client().get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["details"]["checks"]["database"] == "fail"
        assert "unable to open" not in ready.content.decode() and "refused" not in ready.content.decode().lower()
    # when the database is back, with nothing restarted
    assert client.get(ACCOUNTS).status_code == 200
    assert Client().get("/readyz").status_code == 200
    assert _deliver().status_code == 200
