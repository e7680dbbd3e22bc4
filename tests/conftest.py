from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from mktx.iam.models import Role, User
from tests.factories import MerchantFactory, UserFactory, access_token


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory) -> None:
    """SQLite's test database in a file of the session, not in memory.

    For an in-memory SQLite database Django's live server (LiveServerThread, through pytest-django's `live_server`)
    hands its request threads the test thread's own connection, one DatabaseWrapper whose transaction state
    (`atomic_blocks`, `in_atomic_block`, autocommit, `run_on_commit`) and single sqlite3 transaction every thread then
    shares, unlocked: a webhook the sandbox posts while the test thread queries interleaves their `atomic` blocks
    (`IndexError: pop from empty list`, "on_commit() cannot be used in manual transaction management", one thread's
    rollback undoing another's writes). With a file, every thread opens its own connection, as with PostgreSQL, and
    SQLite's locks (`transaction_mode` IMMEDIATE, WAL, the 30 s busy timeout of settings.py) order their writes.
    pytest's temporary directory is per run and per xdist worker; Django deletes the file at the end of the session.
    """
    from django.conf import settings

    for alias, db_settings in settings.DATABASES.items():
        test = db_settings.setdefault("TEST", {})
        if db_settings["ENGINE"] == "django.db.backends.sqlite3" and not test.get("NAME"):
            test["NAME"] = str(tmp_path_factory.mktemp("sqlite") / f"test_{alias}.sqlite3")


@pytest.fixture(autouse=True)
def _fresh_cache(db):
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def merchant():
    return MerchantFactory.create()


@pytest.fixture
def owner(merchant) -> User:
    return UserFactory.create(merchant=merchant, role=Role.OWNER)


@pytest.fixture
def agent(merchant) -> User:
    return UserFactory.create(merchant=merchant, role=Role.AGENT)


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(user))
        return client

    return make


@pytest.fixture
def staff(owner) -> Client:
    """The back office, logged in as the merchant's owner made a superuser."""
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def api(client_for, owner) -> APIClient:
    """An API client logged in as the merchant's owner."""
    return client_for(owner)


# --- the X sandbox --------------------------------------------------------------------------------------------------

CONSUMER_KEY = "test-consumer-key"
CONSUMER_SECRET = "test-consumer-secret"
BEARER_TOKEN = "test-bearer-token"


@pytest.fixture(scope="session")
def _sandbox_server():
    from xsandbox import start_in_thread

    server = start_in_thread(consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET, bearer_token=BEARER_TOKEN)
    yield server
    server.stop()


@pytest.fixture
def sandbox(_sandbox_server, settings):
    """A fresh X sandbox, and the service pointed at it."""
    from tests.sandbox import SandboxControl

    control = SandboxControl(_sandbox_server)
    control.reset()
    settings.X_API_BASE_URL = _sandbox_server.url
    settings.X_CONSUMER_KEY = CONSUMER_KEY
    settings.X_CONSUMER_SECRET = CONSUMER_SECRET
    settings.X_BEARER_TOKEN = BEARER_TOKEN
    settings.MKTX_PUBLIC_URL = "http://127.0.0.1:9"  # nothing listens: echoes go nowhere unless a test serves them
    return control


@pytest.fixture
def count_queries():
    """Counts the queries a block runs against the app's tables (the database cache's are left out: with Redis
    they are not queries at all)."""
    from contextlib import contextmanager

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    @contextmanager
    def counting():
        with CaptureQueriesContext(connection) as context:
            result: dict[str, int] = {}
            yield result
        queries = [q["sql"] for q in context.captured_queries]
        result["n"] = len([sql for sql in queries if "mktx_cache" not in sql and "SAVEPOINT" not in sql])

    return counting


@pytest.fixture
def clock():
    """Time frozen at CLOCK_START and ticking from there; tests move it (`clock.move_to`, `clock.shift`)."""
    import time_machine

    from tests.campaign_helpers import CLOCK_START

    with time_machine.travel(CLOCK_START, tick=True) as traveller:
        yield traveller


@pytest.fixture
def shop(owner, sandbox, clock):
    """The owner's X account @goodgo_shop, connected through the sandbox (a module may define its own)."""
    from tests.campaign_helpers import FreshTokenClient, connect

    return connect(FreshTokenClient(owner), sandbox)


@pytest.fixture
def jane(sandbox, shop):
    """A customer who DMed the shop: her contact and conversation made by the inbound path."""
    from tests.campaign_helpers import customer

    return customer(sandbox, shop, "jane_doe")


@pytest.fixture
def unthrottled(monkeypatch):
    """The rate limit's counter is a cache write (queries with the database cache of SQLite): not the list's own."""
    from automation.views import FlowViewSet

    monkeypatch.setattr(FlowViewSet, "throttle_classes", [])


@pytest.fixture
def enroll_engine(monkeypatch):
    """The engine's own contacts_enroll, with its calls recorded."""
    calls: list[tuple[Any, list[Any]]] = []
    from automation import triggers

    real = triggers.contacts_enroll

    def contacts_enroll(*, flow: Any, contacts: list[Any]) -> list[tuple[Any, Any]]:
        calls.append((flow, list(contacts)))
        return real(flow=flow, contacts=contacts)

    monkeypatch.setattr(triggers, "contacts_enroll", contacts_enroll)
    return calls


@pytest.fixture
def service(live_server, settings, sandbox):
    """The API on a live server that the sandbox's webhook deliveries reach; its base URL. At the end it waits for
    the sandbox's asynchronous deliveries (the echoes of the service's own sends): one still being processed by the
    live server while the test database is flushed makes the flush fail."""
    settings.MKTX_PUBLIC_URL = live_server.url
    yield live_server.url
    sandbox.deliveries(wait=10)


@pytest.fixture
def live_shop(service, sandbox, owner):
    """@goodgo_shop connected through the live server's API (its webhook registered by a real CRC check)."""
    from tests.live_helpers import api

    shop = sandbox.user("goodgo_shop")
    body = {"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]}
    assert api(service, owner, "POST", "/accounts", json=body).status_code == 200
    return shop


@pytest.fixture
def history():
    """The analytics tests' known history (tests/analytics_helpers.py), and the rollup built from it, as the minute's
    maintenance does (its rows are written directly, not through the services): the overview reads the rollup."""
    from analytics.rollup import rollup_build
    from tests.analytics_helpers import build_history

    built = build_history()
    rollup_build()
    return built
