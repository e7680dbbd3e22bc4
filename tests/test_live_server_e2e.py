"""The live server the end-to-end tests use serves its requests on connections of its own (tests/conftest.py)."""

from __future__ import annotations

import threading
from functools import partial

import pytest
import requests
from django.db import transaction

from mktx.iam.models import Merchant
from tests.factories import access_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_live_server_does_not_share_the_test_threads_connection(live_server):
    # Django hands the live server's threads the test thread's own connection for an in-memory SQLite database only
    assert live_server.thread.connections_override == {}


def test_the_test_thread_and_the_live_server_write_at_once(live_server, owner, settings):
    # the rate limit still counts every request (a cache write); it is only set above what two browsers can do in
    # the time the writes take, which a loaded machine can stretch past a minute's 100 requests
    settings.MKTX_API_RATE_LIMIT = (100_000, 60)
    headers = {"Authorization": f"Bearer {access_token(owner)}"}
    stop = threading.Event()
    failures: list[str] = []
    served: list[int] = []

    def browse() -> None:
        with requests.Session() as session:
            while not stop.is_set():  # each request counts itself in the database cache's rate limit: a write
                response = session.get(f"{live_server.url}/api/v1/mkt-x/contacts", headers=headers, timeout=30)
                served.append(response.status_code)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")

    browsers = [threading.Thread(target=browse) for _ in range(2)]
    for browser in browsers:
        browser.start()
    committed: list[int] = []
    try:
        for i in range(400):
            with transaction.atomic():
                Merchant.objects.create(name=f"writer {i}")
                transaction.on_commit(partial(committed.append, i))
                with transaction.atomic():
                    Merchant.objects.filter(name=f"writer {i}").update(name=f"written {i}")
    finally:
        stop.set()
        for browser in browsers:
            browser.join()

    assert committed == list(range(400))
    assert Merchant.objects.filter(name__startswith="written ").count() == 400
    assert served and not failures, failures[:3]
