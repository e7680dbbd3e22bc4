"""The API conventions every endpoint follows: envelope, pagination, errors, roles, scoping, rate limit."""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework.viewsets import ViewSetMixin

from mktx.accounts.models import Account
from mktx.api import throttling
from mktx.api.viewsets import MerchantScopedMixin
from tests.factories import AccountFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/v1/mkt-x/accounts"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["details"], dict)
    return body


# --- envelope and pagination -------------------------------------------------------------------------------------


def test_a_list_answers_the_envelope_with_camel_case_fields(api, merchant):
    account = AccountFactory.create(merchant=merchant, username="goodgo_shop", display_name="GoodGo Official")

    response = api.get(ACCOUNTS)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 1, "totalPages": 1}
    assert body["data"] == [
        {
            "id": str(account.id),
            "merchantId": str(merchant.id),
            "twitterUserId": account.twitter_user_id,
            "username": "goodgo_shop",
            "displayName": "GoodGo Official",
            "status": "active",
            "connectedAt": account.connected_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]


def test_skip_and_take_page_through_a_list(api, merchant):
    AccountFactory.create_batch(25, merchant=merchant)

    first = api.get(ACCOUNTS, {"take": 10}).json()
    last = api.get(ACCOUNTS, {"skip": 20, "take": 10}).json()
    beyond = api.get(ACCOUNTS, {"skip": 100}).json()

    assert first["pagination"] == {"page": 1, "limit": 10, "total": 25, "totalPages": 3}
    assert len(first["data"]) == 10
    assert last["pagination"] == {"page": 3, "limit": 10, "total": 25, "totalPages": 3}
    assert len(last["data"]) == 5
    assert {a["id"] for a in first["data"]}.isdisjoint({a["id"] for a in last["data"]})
    assert beyond["data"] == []
    assert beyond["pagination"]["total"] == 25


def test_an_empty_list_has_zero_pages(api):
    assert api.get(ACCOUNTS).json()["pagination"] == {"page": 1, "limit": 20, "total": 0, "totalPages": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"take": 0}, "take"),
        ({"take": 101}, "take"),
        ({"take": "ten"}, "take"),
        ({"take": "1.5"}, "take"),
        ({"take": ""}, "take"),
        ({"skip": -1}, "skip"),
        ({"skip": "x"}, "skip"),
        ({"skip": "1e3"}, "skip"),
    ],
)
def test_bad_skip_or_take_is_a_validation_error_naming_it(api, params, field):
    body = assert_error(api.get(ACCOUNTS, params), 400, "VALIDATION_ERROR")
    assert body["details"]["field"] == field


def test_take_100_is_allowed(api):
    assert api.get(ACCOUNTS, {"take": 100}).json()["pagination"]["limit"] == 100


def test_a_list_filter_with_an_unknown_choice_is_a_validation_error(api):
    body = assert_error(api.get(ACCOUNTS, {"status": "sleeping"}), 400, "VALIDATION_ERROR")
    assert body["details"]["field"] == "status"


def test_the_status_filter_narrows_the_list(api, merchant):
    AccountFactory.create(merchant=merchant, status="active")
    inactive = AccountFactory.create(merchant=merchant, status="inactive")
    data = api.get(ACCOUNTS, {"status": "inactive"}).json()["data"]
    assert [a["id"] for a in data] == [str(inactive.id)]


# --- error paths outside and inside DRF ----------------------------------------------------------------------------


def test_an_unknown_route_answers_the_404_envelope(api):
    assert_error(api.get("/api/v1/mkt-x/no-such-thing"), 404, "RESOURCE_NOT_FOUND")
    assert_error(Client().get("/api/v1/nothing/here"), 404, "RESOURCE_NOT_FOUND")


def test_an_unknown_route_answers_the_envelope_with_debug_on_too(api, settings):
    settings.DEBUG = True
    assert_error(api.get("/api/v1/mkt-x/no-such-thing"), 404, "RESOURCE_NOT_FOUND")


def test_a_wrong_method_answers_405_envelope(api):
    body = assert_error(api.delete(ACCOUNTS), 405, "METHOD_NOT_ALLOWED")
    assert "DELETE" in body["error"]
    assert_error(APIClient().get("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.urls("tests.probe_urls")
def test_malformed_json_is_a_validation_error_on_the_body(api):
    response = api.generic("POST", "/api/v1/mkt-x/probe-echo", '{"displayName": "x",', content_type="application/json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["details"]["field"] == "body"


@pytest.mark.urls("tests.probe_urls")
def test_a_wrong_content_type_is_refused_with_415(api):
    response = api.generic("POST", "/api/v1/mkt-x/probe-echo", "displayName=x", content_type="text/plain")
    body = assert_error(response, 415, "VALIDATION_ERROR")
    assert body["details"]["field"] == "Content-Type"


@pytest.mark.urls("tests.probe_urls")
def test_an_oversized_body_is_refused_with_413_before_parsing(api, settings):
    settings.MKTX_MAX_BODY_BYTES = 2048
    payload = '{"displayName": "' + "x" * 4000 + '"}'
    response = api.generic("POST", "/api/v1/mkt-x/probe-echo", payload, content_type="application/json")
    body = assert_error(response, 413, "VALIDATION_ERROR")
    assert body["details"]["field"] == "body"


def test_an_oversized_login_body_is_refused_too(settings):
    settings.MKTX_MAX_BODY_BYTES = 2048
    response = APIClient().generic(
        "POST", "/api/v1/auth/login", '{"email": "' + "a" * 5000 + '"}', content_type="application/json"
    )
    assert_error(response, 413, "VALIDATION_ERROR")


@pytest.mark.urls("tests.probe_urls")
def test_validation_errors_name_nested_fields_in_camel_case(api):
    response = api.post(
        "/api/v1/mkt-x/probe-echo", {"displayName": "far too long a name", "schedule": {"start": "x"}}, format="json"
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["details"]["field"] == "displayName"
    assert set(body["details"]["fields"]) == {"displayName", "schedule.start"}
    assert "displayName" in body["error"]


@pytest.mark.urls("tests.probe_urls")
def test_valid_input_is_echoed_in_the_envelope(api):
    response = api.post("/api/v1/mkt-x/probe-echo", {"displayName": "ok", "schedule": {"a": 1}}, format="json")
    assert response.json() == {"success": True, "data": {"display_name": "ok", "schedule": {"a": 1}}}


@pytest.mark.urls("tests.probe_urls")
def test_an_unexpected_exception_is_a_500_envelope_without_traceback_logged_with_request_id(api, caplog):
    with caplog.at_level(logging.ERROR):
        response = api.get("/api/v1/mkt-x/probe-boom", HTTP_X_REQUEST_ID="req-12345")

    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert body["details"] == {"requestId": "req-12345"}
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert response["X-Request-ID"] == "req-12345"
    assert any("req-12345" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.urls("tests.probe_urls")
def test_a_crash_outside_drf_also_answers_the_envelope(owner, settings):
    for debug in (False, True):
        settings.DEBUG = debug
        response = Client(raise_request_exception=False).get("/api/v1/mkt-x/probe-plain-boom")
        body = assert_error(response, 500, "INTERNAL_ERROR")
        assert body["details"]["requestId"] == response["X-Request-ID"]
        assert "secret internals" not in response.content.decode()


def test_an_unsafe_request_id_is_replaced(api):
    response = api.get(ACCOUNTS, HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


# --- roles and merchant scope --------------------------------------------------------------------------------------


@pytest.mark.urls("tests.probe_urls")
def test_an_agent_is_refused_on_an_owner_only_route_and_nothing_changes(client_for, agent, merchant):
    account = AccountFactory.create(merchant=merchant)

    response = client_for(agent).delete(f"/api/v1/mkt-x/probe-accounts/{account.id}")

    assert_error(response, 403, "FORBIDDEN")
    assert Account.objects.filter(pk=account.pk).exists()


@pytest.mark.urls("tests.probe_urls")
def test_an_agent_may_read_and_use_actions_opened_to_agents(client_for, agent, merchant):
    account = AccountFactory.create(merchant=merchant)
    client = client_for(agent)
    assert client.get(f"/api/v1/mkt-x/probe-accounts/{account.id}").status_code == 200
    assert client.post(f"/api/v1/mkt-x/probe-accounts/{account.id}/touch").json()["data"] == {"id": str(account.id)}


@pytest.mark.urls("tests.probe_urls")
@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_may_write(client_for, merchant, role):
    account = AccountFactory.create(merchant=merchant)
    user = UserFactory.create(merchant=merchant, role=role)
    response = client_for(user).delete(f"/api/v1/mkt-x/probe-accounts/{account.id}")
    assert response.status_code == 204 or response.status_code == 200
    assert not Account.objects.filter(pk=account.pk).exists()


@pytest.mark.urls("tests.probe_urls")
def test_another_merchants_object_is_404_like_a_missing_one(api):
    foreign = AccountFactory.create(merchant=MerchantFactory.create())

    for path in (f"/api/v1/mkt-x/probe-accounts/{foreign.id}", "/api/v1/mkt-x/probe-accounts/not-a-uuid"):
        assert_error(api.get(path), 404, "RESOURCE_NOT_FOUND")
    assert_error(api.delete(f"/api/v1/mkt-x/probe-accounts/{foreign.id}"), 404, "RESOURCE_NOT_FOUND")
    assert Account.objects.filter(pk=foreign.pk).exists()


def test_lists_show_only_the_callers_merchant(api, merchant):
    mine = AccountFactory.create(merchant=merchant)
    AccountFactory.create(merchant=MerchantFactory.create())
    assert [a["id"] for a in api.get(ACCOUNTS).json()["data"]] == [str(mine.id)]


def _viewsets(patterns, found=None):
    found = set() if found is None else found
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _viewsets(pattern.url_patterns, found)
        elif isinstance(pattern, URLPattern):
            cls = getattr(pattern.callback, "cls", None)
            if cls is not None and issubclass(cls, ViewSetMixin):
                found.add(cls)
    return found


def test_every_viewset_of_the_api_is_scoped_to_the_merchant():
    viewsets = _viewsets(get_resolver().url_patterns)
    assert viewsets, "no viewsets found"
    assert [v.__name__ for v in viewsets if not issubclass(v, MerchantScopedMixin)] == []


# --- rate limit ----------------------------------------------------------------------------------------------------


def test_the_101st_request_of_a_minute_is_429_with_retry_after(api, monkeypatch):
    monkeypatch.setattr(throttling.time, "time", lambda: 1_800_000_010.0)

    responses = [api.get(ACCOUNTS) for _ in range(101)]

    assert [r.status_code for r in responses[:100]] == [200] * 100
    first, hundredth, over = responses[0], responses[99], responses[100]
    assert first["X-RateLimit-Limit"] == "100"
    assert first["X-RateLimit-Remaining"] == "99"
    assert first["X-RateLimit-Reset"] == "1800000060"
    assert hundredth["X-RateLimit-Remaining"] == "0"
    body = assert_error(over, 429, "RATE_LIMIT_EXCEEDED")
    assert over["Retry-After"] == "50"
    assert over["X-RateLimit-Remaining"] == "0"
    assert body["details"]["retryAfter"] == 50


def test_the_rate_limit_is_per_merchant_and_resets_with_the_window(api, client_for, settings, monkeypatch):
    settings.MKTX_API_RATE_LIMIT = (2, 60)
    now = [1_800_000_000.0]
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    other = client_for(UserFactory.create(merchant=MerchantFactory.create()))

    assert [api.get(ACCOUNTS).status_code for _ in range(3)] == [200, 200, 429]
    assert other.get(ACCOUNTS).status_code == 200
    now[0] += 60
    assert api.get(ACCOUNTS).status_code == 200


def test_users_of_one_merchant_share_its_limit(client_for, owner, agent, settings, monkeypatch):
    settings.MKTX_API_RATE_LIMIT = (2, 60)
    monkeypatch.setattr(throttling.time, "time", lambda: 1_800_000_000.0)
    assert client_for(owner).get(ACCOUNTS).status_code == 200
    assert client_for(agent).get(ACCOUNTS).status_code == 200
    assert client_for(owner).get(ACCOUNTS).status_code == 429


def test_unauthenticated_responses_carry_no_rate_limit_headers():
    response = APIClient().get(ACCOUNTS)
    assert response.status_code == 401
    assert "X-RateLimit-Limit" not in response
