"""End to end over real HTTP both ways: the service served by a live server, X played by the sandbox."""

from __future__ import annotations

import pytest

from mktx.accounts.models import Account
from tests.live_helpers import api
from webhooks_app.models import InboundEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_connecting_registers_the_webhook_through_a_real_crc_check(service, sandbox, owner):
    assert sandbox.server.sandbox.list_webhooks()["data"] == []
    shop = sandbox.user("goodgo_shop")

    response = api(
        service,
        owner,
        "POST",
        "/accounts",
        json={"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]},
    )

    assert response.status_code == 200, response.text
    (webhook,) = sandbox.server.sandbox.list_webhooks()["data"]
    assert webhook["url"] == f"{service}/api/v1/mkt-x/webhooks/twitter"
    assert Account.objects.get().webhook_id == webhook["id"]


def test_a_customer_dm_reaches_the_service_as_a_stored_signed_processed_event(service, sandbox, owner):
    shop, john = sandbox.user("goodgo_shop"), sandbox.user("customer_john")
    api(
        service,
        owner,
        "POST",
        "/accounts",
        json={"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]},
    )

    sent = sandbox.dm(john["id"], shop["id"], "Hello, where is my order?")

    assert [d["status"] for d in sent["deliveries"]] == [200]
    event = InboundEvent.objects.get()
    assert event.dedup_key == f"dm:{sent['eventId']}:{shop['id']}"
    assert event.status != "pending"  # processed through the handler table at once
    assert event.account is not None and event.account.twitter_user_id == shop["id"]


def test_a_revoke_at_x_marks_the_account_error(service, sandbox, owner):
    shop = sandbox.user("goodgo_shop")
    api(
        service,
        owner,
        "POST",
        "/accounts",
        json={"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]},
    )

    result = sandbox.revoke(shop["id"])

    assert [d["status"] for d in result["deliveries"]] == [200]
    assert Account.objects.get().status == "error"


def test_a_wrong_public_url_fails_the_crc_and_nothing_is_connected(service, sandbox, owner, settings):
    settings.MKTX_PUBLIC_URL = "http://127.0.0.1:9"
    shop = sandbox.user("goodgo_shop")
    response = api(
        service,
        owner,
        "POST",
        "/accounts",
        json={"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]},
    )
    assert response.status_code == 502
    assert "CRC" in response.json()["details"]["reason"]
    assert not Account.objects.exists()
