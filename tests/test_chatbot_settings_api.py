"""GET and PUT /ai/settings: defaults until written, every field validated (400 naming it), PUT keeping the fields it
is not given, the order lookup's secret write-only everywhere (answers, logs, the admin), the openai engine only with
OPENAI_API_KEY, agents reading and owners and admins writing; the settings' back-office page."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatbot.ai_settings import ai_settings_update, order_lookup_secret
from chatbot.models import DEFAULT_HANDOFF, AISettings
from mktx.iam.models import Role
from tests.factories import MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

SETTINGS = "/api/v1/mkt-x/ai/settings"
SECRET = "lookup-secret-8d1f"
DEFAULTS = {
    "enabled": False,
    "model": "gpt-4o-mini",
    "temperature": 0.7,
    "maxTokens": 500,
    "autoEscalationThreshold": 0.6,
    "systemPrompt": "",
    "engine": "builtin",
    "autoReply": False,
    "handoffMessage": DEFAULT_HANDOFF,
    "sessionTimeoutMinutes": 30,
    "escalationAssignment": "none",
    "orderLookupUrl": "",
    "orderLookupSecretSet": False,
}


def put(client: Any, body: Any) -> Any:
    return client.put(SETTINGS, body, format="json")


def data(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.json()
    return dict(response.json()["data"])


def refused_field(response: Any) -> str:
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    return str(body["details"]["field"])


# --- reading and writing ---------------------------------------------------------------------------------------------


def test_it_answers_the_defaults_before_anything_is_written_and_writes_nothing(api):
    assert data(api.get(SETTINGS)) == DEFAULTS
    assert not AISettings.objects.exists()


def test_it_takes_the_references_body_and_reads_it_back(api, merchant):
    body = {
        "enabled": True,
        "model": "gpt-4",
        "temperature": 0.7,
        "maxTokens": 500,
        "autoEscalationThreshold": 0.6,
        "systemPrompt": "You are a helpful customer service assistant for GoodGo Shop...",
    }

    written = data(put(api, body))

    assert written == {**DEFAULTS, **body}
    assert data(api.get(SETTINGS)) == written
    stored = AISettings.objects.get(merchant=merchant)
    assert (stored.model, stored.max_tokens, stored.enabled) == ("gpt-4", 500, True)


def test_a_put_changes_the_fields_it_is_given_and_keeps_the_others(api):
    data(put(api, {"temperature": 1.2, "model": "gpt-4", "autoReply": True, "orderLookupSecret": SECRET}))

    written = data(put(api, {"enabled": True, "sessionTimeoutMinutes": 45}))

    assert written == {
        **DEFAULTS,
        "temperature": 1.2,
        "model": "gpt-4",
        "autoReply": True,
        "enabled": True,
        "sessionTimeoutMinutes": 45,
        "orderLookupSecretSet": True,
    }
    assert data(put(api, {})) == written


def test_it_sets_every_field_of_the_contract(api, merchant):
    body = {
        "enabled": True,
        "model": "llama3.1:8b",
        "temperature": 0,
        "maxTokens": 4000,
        "autoEscalationThreshold": 1,
        "systemPrompt": "x" * 10_000,
        "engine": "builtin",
        "autoReply": True,
        "handoffMessage": "h" * 1000,
        "sessionTimeoutMinutes": 1440,
        "escalationAssignment": "round_robin",
        "orderLookupUrl": "https://shop.example/orders/lookup",
        "orderLookupSecret": "s" * 200,
    }

    written = data(put(api, body))

    expected = {k: v for k, v in body.items() if k != "orderLookupSecret"}
    assert written == {**expected, "orderLookupSecretSet": True}
    stored = AISettings.objects.get(merchant=merchant)
    assert stored.escalation_assignment == "round_robin"
    assert stored.order_lookup_url == "https://shop.example/orders/lookup"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2),
        ("maxTokens", 1),
        ("autoEscalationThreshold", 0),
        ("sessionTimeoutMinutes", 1),
        ("handoffMessage", "h"),
        ("systemPrompt", ""),
        ("orderLookupUrl", "http://127.0.0.1:8080/lookup?shop=1"),
        ("orderLookupUrl", "HTTPS://xn--bcher-kva.example/orders/lookup?id=%C3%BC#top"),
        ("orderLookupUrl", "http://[::1]:8000/lookup"),
        ("maxTokens", 800.0),
    ],
)
def test_it_accepts_the_bounds_of_each_range(api, field, value):
    assert data(put(api, {field: value}))[field] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("enabled", "yes"),
        ("enabled", 1),
        ("enabled", None),
        ("model", ""),
        ("model", "   "),
        ("model", "m" * 101),
        ("model", 4),
        ("temperature", -0.1),
        ("temperature", 2.01),
        ("temperature", "0.5"),
        ("temperature", True),
        ("maxTokens", 0),
        ("maxTokens", 4001),
        ("maxTokens", 1.5),
        ("maxTokens", "500"),
        ("autoEscalationThreshold", -0.01),
        ("autoEscalationThreshold", 1.01),
        ("autoEscalationThreshold", None),
        ("systemPrompt", "p" * 10_001),
        ("systemPrompt", ["a"]),
        ("engine", "gpt"),
        ("engine", ""),
        ("autoReply", "true"),
        ("handoffMessage", ""),
        ("handoffMessage", "  "),
        ("handoffMessage", "h" * 1001),
        ("sessionTimeoutMinutes", 0),
        ("sessionTimeoutMinutes", 1441),
        ("sessionTimeoutMinutes", 30.5),
        ("escalationAssignment", "random"),
        ("orderLookupUrl", "ftp://shop.example/lookup"),
        ("orderLookupUrl", "not a url"),
        ("orderLookupUrl", "javascript:alert(1)"),
        ("orderLookupUrl", "https://"),
        ("orderLookupUrl", "https://shop.example:99999/x"),
        ("orderLookupUrl", "https://shop.example/a b"),
        ("orderLookupUrl", "hTtps://\u000f\u00a9h"),
        ("orderLookupUrl", "https://bücher.example/lookup"),
        ("orderLookupUrl", "https://user:pass@shop.example/lookup"),
        ("orderLookupUrl", "https://shop.example/x#a#b"),
        ("orderLookupUrl", "http://[::zz]/lookup"),
        ("orderLookupUrl", "https://shop.example/" + "a" * 480),
        ("orderLookupUrl", None),
        ("orderLookupSecret", "s" * 201),
        ("orderLookupSecret", 12345),
    ],
)
def test_it_refuses_an_invalid_value_naming_the_field_and_changes_nothing(api, merchant, field, value):
    ai_settings_update(merchant_id=merchant.id, changes={"model": "gpt-4"})
    before = data(api.get(SETTINGS))

    response = put(api, {"enabled": True, field: value})

    assert refused_field(response) == field
    assert data(api.get(SETTINGS)) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabled": True, "tempreture": 0.5}, "tempreture"),
        ({"max_tokens": 100}, "max_tokens"),
        ({"orderLookupSecretSet": True}, "orderLookupSecretSet"),
        ([{"enabled": True}], "body"),
    ],
)
def test_it_refuses_unknown_keys_naming_them(api, body, field):
    assert refused_field(put(api, body)) == field
    assert not AISettings.objects.exists()


# --- the engine ----------------------------------------------------------------------------------------------------


def test_the_openai_engine_is_refused_without_an_api_key_on_the_server(api, settings):
    settings.OPENAI_API_KEY = ""

    response = put(api, {"engine": "openai", "model": "gpt-4o"})

    assert refused_field(response) == "engine"
    assert "OPENAI_API_KEY" in response.json()["details"]["reason"]
    assert not AISettings.objects.exists()


def test_the_openai_engine_is_taken_with_an_api_key_on_the_server(api, settings):
    settings.OPENAI_API_KEY = "sk-test"

    written = data(put(api, {"engine": "openai", "model": "gpt-4o"}))

    assert (written["engine"], written["model"]) == ("openai", "gpt-4o")
    assert data(put(api, {"engine": "builtin"}))["engine"] == "builtin"


# --- the order lookup's secret -------------------------------------------------------------------------------------


def test_the_secret_is_stored_encrypted_and_never_answered_nor_logged(api, client_for, agent, merchant, caplog):
    with caplog.at_level(logging.DEBUG):
        written = put(api, {"orderLookupUrl": "https://shop.example/lookup", "orderLookupSecret": SECRET})
        read = api.get(SETTINGS)
        by_agent = client_for(agent).get(SETTINGS)

    for response in (written, read, by_agent):
        assert data(response)["orderLookupSecretSet"] is True
        assert "orderLookupSecret" not in data(response)
        assert SECRET not in response.content.decode()
    stored = AISettings.objects.get(merchant=merchant)
    assert stored.order_lookup_secret_encrypted
    assert SECRET not in stored.order_lookup_secret_encrypted
    assert order_lookup_secret(stored) == SECRET
    assert SECRET not in caplog.text
    assert stored.order_lookup_secret_encrypted not in caplog.text


def test_a_put_without_the_secret_keeps_it_and_an_empty_one_clears_it(api, merchant):
    data(put(api, {"orderLookupSecret": SECRET}))

    kept = data(put(api, {"enabled": True}))
    assert kept["orderLookupSecretSet"] is True
    assert order_lookup_secret(AISettings.objects.get(merchant=merchant)) == SECRET

    cleared = data(put(api, {"orderLookupSecret": ""}))
    assert cleared["orderLookupSecretSet"] is False
    assert AISettings.objects.get(merchant=merchant).order_lookup_secret_encrypted == ""


def test_an_empty_url_turns_the_lookup_off(api):
    data(put(api, {"orderLookupUrl": "https://shop.example/lookup"}))
    assert data(put(api, {"orderLookupUrl": ""}))["orderLookupUrl"] == ""


def test_the_schema_documents_the_secret_as_write_only(api):
    schema = api.get("/api/v1/mkt-x/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def resolved(item: dict[str, Any]) -> dict[str, Any]:
        return dict(components[item["$ref"].rsplit("/", 1)[-1]]) if "$ref" in item else item

    operation = schema["paths"][SETTINGS]["put"]
    request = resolved(operation["requestBody"]["content"]["application/json"]["schema"])
    envelope = resolved(operation["responses"]["200"]["content"]["application/json"]["schema"])
    answer = resolved(envelope["properties"]["data"])

    assert "orderLookupSecret" in request["properties"]
    assert "orderLookupSecret" not in answer["properties"]
    assert answer["properties"]["orderLookupSecretSet"]["type"] == "boolean"


# --- roles and merchants -------------------------------------------------------------------------------------------


def test_an_agent_reads_the_settings_but_may_not_change_them(client_for, agent, merchant):
    ai_settings_update(merchant_id=merchant.id, changes={"model": "gpt-4"})
    client = client_for(agent)

    assert data(client.get(SETTINGS))["model"] == "gpt-4"
    refused = put(client, {"model": "gpt-3.5", "orderLookupSecret": SECRET})

    assert refused.status_code == 403
    assert refused.json()["code"] == "FORBIDDEN"
    stored = AISettings.objects.get(merchant=merchant)
    assert (stored.model, stored.order_lookup_secret_encrypted) == ("gpt-4", "")


def test_an_agent_writes_nothing_even_before_the_first_write(client_for, agent):
    assert put(client_for(agent), {"enabled": True}).status_code == 403
    assert not AISettings.objects.exists()


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_change_the_settings(client_for, merchant, role):
    client = client_for(UserFactory.create(merchant=merchant, role=role))
    assert data(put(client, {"enabled": True}))["enabled"] is True


def test_a_request_without_a_token_is_refused():
    from rest_framework.test import APIClient

    assert APIClient().get(SETTINGS).status_code == 401
    assert APIClient().put(SETTINGS, {"enabled": True}, format="json").status_code == 401
    assert not AISettings.objects.exists()


def test_each_merchant_has_its_own_settings(api, client_for, merchant):
    other = MerchantFactory.create()
    ai_settings_update(merchant_id=other.id, changes={"enabled": True, "order_lookup_secret": SECRET})

    mine = data(api.get(SETTINGS))
    data(put(api, {"model": "mine"}))

    assert mine == DEFAULTS
    theirs = AISettings.objects.get(merchant=other)
    assert (theirs.model, theirs.enabled) == ("gpt-4o-mini", True)
    assert data(client_for(UserFactory.create(merchant=other)).get(SETTINGS))["orderLookupSecretSet"] is True


# --- the back office -----------------------------------------------------------------------------------------------


def _admin_form(row: AISettings, **changes: Any) -> dict[str, Any]:
    form = {
        "enabled": "on" if row.enabled else "",
        "auto_reply": "on" if row.auto_reply else "",
        "engine": row.engine,
        "model": row.model,
        "temperature": str(row.temperature),
        "max_tokens": str(row.max_tokens),
        "auto_escalation_threshold": str(row.auto_escalation_threshold),
        "system_prompt": row.system_prompt,
        "handoff_message": row.handoff_message,
        "session_timeout_minutes": str(row.session_timeout_minutes),
        "escalation_assignment": row.escalation_assignment,
        "order_lookup_url": row.order_lookup_url,
        **changes,
    }
    return {k: v for k, v in form.items() if v != ""}


def test_the_admin_shows_whether_a_secret_is_set_never_the_secret(staff, api, merchant):
    data(put(api, {"orderLookupUrl": "https://shop.example/lookup", "orderLookupSecret": SECRET}))
    row = AISettings.objects.get(merchant=merchant)

    pages = [
        staff.get("/admin/chatbot/aisettings/"),
        staff.get(f"/admin/chatbot/aisettings/{merchant.pk}/change/"),
        staff.get(f"/admin/chatbot/aisettings/{merchant.pk}/history/"),
    ]

    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        assert SECRET not in text
        assert row.order_lookup_secret_encrypted not in text
    assert "on, signed" in pages[0].content.decode()
    assert "set (never shown)" in pages[1].content.decode()
    assert 'name="order_lookup_secret' not in pages[1].content.decode()


def test_the_admin_changes_settings_through_the_apis_checks(staff, merchant, settings):
    settings.OPENAI_API_KEY = ""
    row = ai_settings_update(merchant_id=merchant.id, changes={"order_lookup_secret": SECRET})
    url = f"/admin/chatbot/aisettings/{merchant.pk}/change/"

    refused = staff.post(url, _admin_form(row, temperature="2.5"))
    no_key = staff.post(url, _admin_form(row, engine="openai"))
    saved = staff.post(url, _admin_form(row, temperature="1.1", model="gpt-4"))

    assert refused.status_code == 200 and "less than or equal to 2" in refused.content.decode()
    assert no_key.status_code == 200 and "OPENAI_API_KEY" in no_key.content.decode()
    assert saved.status_code == 302
    row.refresh_from_db()
    assert (row.temperature, row.model, row.engine) == (1.1, "gpt-4", "builtin")
    assert order_lookup_secret(row) == SECRET


def test_the_admin_clears_a_secret_with_its_action(staff, merchant):
    ai_settings_update(merchant_id=merchant.id, changes={"order_lookup_secret": SECRET})

    response = staff.post(
        "/admin/chatbot/aisettings/",
        {"action": "clear_order_lookup_secret", "_selected_action": [str(merchant.pk)]},
    )

    assert response.status_code == 302
    assert AISettings.objects.get(merchant=merchant).order_lookup_secret_encrypted == ""
