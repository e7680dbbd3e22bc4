"""Connected accounts: the five endpoints of the reference, over real HTTP against the X sandbox."""

from __future__ import annotations

import pytest
import requests
from requests_oauthlib import OAuth1

from mktx.accounts.models import Account
from mktx.accounts.services import webhook_url
from tests.conftest import CONSUMER_KEY, CONSUMER_SECRET
from tests.factories import AccountFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
ACCOUNTS = "/api/v1/mkt-x/accounts"


@pytest.fixture
def x(sandbox):
    """The sandbox with the service's webhook already registered (no CRC: the test client has no HTTP server)."""
    sandbox.register_webhook(webhook_url())
    return sandbox


def connect(api, user: dict):
    return api.post(
        ACCOUNTS, {"oauthToken": user["oauthToken"], "oauthTokenSecret": user["oauthTokenSecret"]}, format="json"
    )


def token_works(sandbox, user: dict) -> bool:
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, user["oauthToken"], user["oauthTokenSecret"])
    return requests.get(sandbox.url + "/2/users/me", auth=auth, timeout=5).status_code == 200


def subscribed(sandbox, user_id: str) -> bool:
    return any(uid == user_id for _, uid in sandbox.server.sandbox.subscriptions)


def test_connect_verifies_the_tokens_subscribes_and_stores_them_encrypted(api, merchant, x):
    shop = x.user("goodgo_shop", "GoodGo Official")

    response = connect(api, shop)

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["merchantId"] == str(merchant.id)
    assert (data["twitterUserId"], data["username"], data["displayName"], data["status"]) == (
        shop["id"],
        "goodgo_shop",
        "GoodGo Official",
        "active",
    )
    assert subscribed(x, shop["id"])
    account = Account.objects.get(pk=data["id"])
    assert account.webhook_id == x.server.sandbox.list_webhooks()["data"][0]["id"]
    assert shop["oauthToken"] not in account.oauth_token_encrypted
    assert shop["oauthTokenSecret"] not in account.oauth_token_secret_encrypted
    assert "oauth" not in str(response.json()).lower().replace("oauthtoken", "")


def test_tokens_never_appear_in_responses(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]
    for path in (ACCOUNTS, f"{ACCOUNTS}/{account_id}"):
        body = api.get(path).content.decode()
        assert shop["oauthToken"] not in body and shop["oauthTokenSecret"] not in body
        assert "Encrypted" not in body and "encrypted" not in body


def test_connect_with_tokens_x_refuses_is_400_and_stores_nothing(api, x):
    shop = x.user("goodgo_shop")
    response = api.post(ACCOUNTS, {"oauthToken": shop["oauthToken"], "oauthTokenSecret": "wrong"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert "Invalid OAuth credentials" in body["error"]
    assert body["details"]["field"] == "oauthToken"
    assert not Account.objects.exists()


@pytest.mark.parametrize("payload", [{}, {"oauthToken": "x"}, {"oauthToken": "", "oauthTokenSecret": "y"}])
def test_connect_without_both_tokens_names_the_missing_field(api, x, payload):
    response = api.post(ACCOUNTS, payload, format="json")
    assert response.status_code == 400
    assert response.json()["details"]["field"] in ("oauthToken", "oauthTokenSecret")


def test_an_account_connected_by_anyone_is_409(api, client_for, x):
    shop = x.user("goodgo_shop")
    assert connect(api, shop).status_code == 200

    again = connect(api, x.new_token(shop["id"]))
    elsewhere = connect(client_for(UserFactory.create(merchant=MerchantFactory.create())), x.new_token(shop["id"]))

    for response in (again, elsewhere):
        assert response.status_code == 409
        assert response.json()["code"] == "DUPLICATE_RESOURCE"
    assert Account.objects.count() == 1


def test_an_agent_cannot_connect_disconnect_or_configure(client_for, agent, merchant, x):
    shop = x.user("goodgo_shop")
    account = AccountFactory.create(merchant=merchant)
    client = client_for(agent)
    assert connect(client, shop).status_code == 403
    assert client.put(f"{ACCOUNTS}/{account.id}", {"autoReplyEnabled": True}, format="json").status_code == 403
    assert client.delete(f"{ACCOUNTS}/{account.id}").status_code == 403
    account.refresh_from_db()
    assert account.status == "active" and not account.auto_reply_enabled
    assert Account.objects.count() == 1
    assert client.get(f"{ACCOUNTS}/{account.id}").status_code == 200


def test_get_details_with_settings_and_statistics(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]

    data = api.get(f"{ACCOUNTS}/{account_id}").json()["data"]

    assert data["profileImageUrl"].endswith("goodgo_shop_normal.jpg")
    assert data["webhookId"]
    assert data["statistics"] == {"totalContacts": 0, "totalConversations": 0, "messagesThisMonth": 0}
    assert data["autoReplyEnabled"] is False
    assert data["businessHours"] == {}
    assert data["optOutKeywords"] == []


def test_another_merchants_account_is_404(api):
    foreign = AccountFactory.create(merchant=MerchantFactory.create())
    for response in (
        api.get(f"{ACCOUNTS}/{foreign.id}"),
        api.put(f"{ACCOUNTS}/{foreign.id}", {"autoReplyEnabled": True}, format="json"),
        api.delete(f"{ACCOUNTS}/{foreign.id}"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "RESOURCE_NOT_FOUND"
    foreign.refresh_from_db()
    assert foreign.status == "active" and not foreign.auto_reply_enabled


BUSINESS_HOURS = {
    "enabled": True,
    "timezone": "Asia/Ho_Chi_Minh",
    "schedule": {"monday": {"start": "09:00", "end": "18:00"}, "tuesday": {"start": "09:00", "end": "18:00"}},
}


def test_settings_round_trip(api, merchant):
    account = AccountFactory.create(merchant=merchant)
    payload = {"autoReplyEnabled": True, "businessHours": BUSINESS_HOURS, "awayMessage": "We are away until 9am."}

    response = api.put(f"{ACCOUNTS}/{account.id}", payload, format="json")

    assert response.status_code == 200
    data = api.get(f"{ACCOUNTS}/{account.id}").json()["data"]
    assert data["autoReplyEnabled"] is True
    assert data["businessHours"] == BUSINESS_HOURS
    assert data["awayMessage"] == "We are away until 9am."


def test_settings_update_only_what_is_sent(api, merchant):
    account = AccountFactory.create(merchant=merchant, away_message="Away", business_hours=BUSINESS_HOURS)
    api.put(f"{ACCOUNTS}/{account.id}", {"autoReplyEnabled": True}, format="json")
    account.refresh_from_db()
    assert account.auto_reply_enabled and account.away_message == "Away" and account.business_hours == BUSINESS_HOURS
    api.put(f"{ACCOUNTS}/{account.id}", {"businessHours": None}, format="json")
    account.refresh_from_db()
    assert account.business_hours == {}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"autoReplyEnabled": "sometimes"}, "autoReplyEnabled"),
        ({"businessHours": {**BUSINESS_HOURS, "timezone": "Mars/Olympus"}}, "businessHours.timezone"),
        ({"businessHours": {**BUSINESS_HOURS, "timezone": ""}}, "businessHours.timezone"),
        ({"businessHours": {"timezone": "UTC"}}, "businessHours.enabled"),
        (
            {"businessHours": {**BUSINESS_HOURS, "schedule": {"funday": {"start": "09:00", "end": "10:00"}}}},
            "businessHours.schedule.funday",
        ),
        (
            {"businessHours": {**BUSINESS_HOURS, "schedule": {"monday": {"start": "18:00", "end": "09:00"}}}},
            "businessHours.schedule.monday.end",
        ),
        (
            {"businessHours": {**BUSINESS_HOURS, "schedule": {"monday": {"start": "9:00", "end": "18:00"}}}},
            "businessHours.schedule.monday.start",
        ),
        (
            {"businessHours": {**BUSINESS_HOURS, "schedule": {"monday": {"start": "09:00", "end": "24:00"}}}},
            "businessHours.schedule.monday.end",
        ),
        (
            {"businessHours": {**BUSINESS_HOURS, "schedule": {"monday": {"start": "09:00"}}}},
            "businessHours.schedule.monday.end",
        ),
        ({"businessHours": {**BUSINESS_HOURS, "schedule": "always"}}, "businessHours.schedule"),
        ({"businessHours": {**BUSINESS_HOURS, "extra": 1}}, "businessHours.extra"),
        ({"awayMessage": "x" * 10_001}, "awayMessage"),
        ({"autoReply": True}, "autoReply"),
        ({"optOutKeywords": ["two words"]}, "optOutKeywords[0]"),
        ({"optOutKeywords": "stop"}, "optOutKeywords"),
    ],
)
def test_invalid_settings_name_the_field_and_change_nothing(api, merchant, payload, field):
    account = AccountFactory.create(merchant=merchant)
    response = api.put(f"{ACCOUNTS}/{account.id}", payload, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert field in response.json()["details"]["fields"], response.json()["details"]
    account.refresh_from_db()
    assert not account.auto_reply_enabled and account.business_hours == {} and account.away_message == ""


def test_disconnect_unsubscribes_invalidates_wipes_and_keeps_history(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]

    response = api.delete(f"{ACCOUNTS}/{account_id}")

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": None}
    assert not subscribed(x, shop["id"])
    assert not token_works(x, shop)
    account = Account.objects.get(pk=account_id)
    assert account.status == "inactive"
    assert account.oauth_token_encrypted == "" and account.oauth_token_secret_encrypted == ""
    assert account.disconnected_at is not None
    assert api.get(f"{ACCOUNTS}/{account_id}").json()["data"]["status"] == "inactive"
    assert api.delete(f"{ACCOUNTS}/{account_id}").status_code == 200  # idempotent


def test_reconnecting_the_same_x_account_reactivates_it(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]
    api.delete(f"{ACCOUNTS}/{account_id}")

    again = connect(api, x.new_token(shop["id"]))

    assert again.status_code == 200
    assert again.json()["data"]["id"] == account_id
    assert again.json()["data"]["status"] == "active"
    assert subscribed(x, shop["id"])
    assert Account.objects.count() == 1


def test_another_merchant_may_connect_an_account_that_was_disconnected(api, client_for, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]
    api.delete(f"{ACCOUNTS}/{account_id}")
    other = client_for(UserFactory.create(merchant=MerchantFactory.create()))

    response = connect(other, x.new_token(shop["id"]))

    assert response.status_code == 200
    assert response.json()["data"]["id"] != account_id
    assert Account.objects.filter(status="active").count() == 1


def test_disconnect_with_a_token_already_revoked_at_x_still_disconnects(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]
    x.revoke(shop["id"])
    assert api.delete(f"{ACCOUNTS}/{account_id}").status_code == 200
    assert Account.objects.get(pk=account_id).status == "inactive"


def test_the_status_filter(api, merchant):
    AccountFactory.create(merchant=merchant, status="active")
    broken = AccountFactory.create(merchant=merchant, status="error")
    assert [a["id"] for a in api.get(ACCOUNTS, {"status": "error"}).json()["data"]] == [str(broken.id)]


# --- X failing -------------------------------------------------------------------------------------------------


def test_an_x_timeout_on_connect_is_503_and_stores_nothing(api, x, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    shop = x.user("goodgo_shop")
    x.fault(method="GET", pathPrefix="/2/users/me", mode="timeout", seconds=1, times=3)
    response = connect(api, shop)
    assert response.status_code == 503
    assert response.json()["code"] == "TWITTER_API_ERROR"
    assert not Account.objects.exists()


def test_an_x_5xx_on_connect_is_502_and_stores_nothing(api, x):
    shop = x.user("goodgo_shop")
    x.fault(method="POST", pathPrefix="/2/account_activity", status=500, times=1)
    response = connect(api, shop)
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "TWITTER_API_ERROR"
    assert body["details"]["xStatus"] == 500
    assert not Account.objects.exists()


def test_x_rate_limiting_on_connect_is_429_with_the_reset_time(api, x):
    shop = x.user("goodgo_shop")
    x.fault(method="GET", pathPrefix="/2/users/me", status=429, times=1)
    response = connect(api, shop)
    assert response.status_code == 429
    assert response.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert "resetAt" in response.json()["details"]
    assert int(response["Retry-After"]) >= 1


def test_an_x_5xx_on_disconnect_is_502_and_leaves_the_account_connected(api, x):
    shop = x.user("goodgo_shop")
    account_id = connect(api, shop).json()["data"]["id"]
    x.fault(method="POST", pathPrefix="/1.1/oauth", status=503, times=1)
    response = api.delete(f"{ACCOUNTS}/{account_id}")
    assert response.status_code == 502
    account = Account.objects.get(pk=account_id)
    assert account.status == "active" and account.oauth_token_encrypted
