"""Hostile inputs (issue 11, point 7): each reaches each endpoint that takes it and answers 400 VALIDATION_ERROR
naming the field, on SQLite and PostgreSQL alike, never a 500. The one exception is a signed webhook: X's
deliveries are never refused for their content, so a NUL is stored and processed with the NUL removed."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from rest_framework.test import APIClient

from campaigns.models import Template
from contacts.models import Contact, Message, Segment
from tests.factories import AccountFactory, ContactFactory
from webhooks_app.models import InboundEvent
from webhooks_app.signatures import sign

pytestmark = pytest.mark.django_db
BASE = "/api/v1/mkt-x"
LOGIN = "/api/v1/auth/login"
HOOK = f"{BASE}/webhooks/twitter"
SECRET = "test-consumer-secret"
SHOP_ID = "4337869213"

IMPOSSIBLE_DATE = "2024-02-30"
IMPOSSIBLE_DATETIME = "2024-02-30T10:00:00Z"
LATE = "9999-12-31T23:59:59-10:00"  # in UTC, past the year 9999
EARLY = "0001-01-01T00:00:00+05:00"  # in UTC, before the year 1
HUGE = 2**64 + 1
NUL = "a\u0000b"
H1 = "engineer h1 owns campaign schedule validation (campaigns/): not fixed at h3's deadline"


def assert_names(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR", body
    assert body["details"]["field"] == field, body


def condition(field: str, operator: str, value) -> list[dict]:
    return [{"field": field, "operator": operator, "value": value}]


# --- segments: create, update, preview --------------------------------------------------------------------------

SEGMENT_VALUES = {
    "impossible date": (condition("lastInteractionAt", "after", IMPOSSIBLE_DATE), "conditions[0].value"),
    "impossible date-time": (condition("firstInteractionAt", "before", IMPOSSIBLE_DATETIME), "conditions[0].value"),
    "impossible date in an attribute": (
        condition("attributes.lastPurchaseDate", "after", IMPOSSIBLE_DATE),
        "conditions[0].value",
    ),
    "date-time past 9999": (condition("lastInteractionAt", "after", LATE), "conditions[0].value"),
    "date-time before year 1": (condition("lastInteractionAt", "before", EARLY), "conditions[0].value"),
    "between out of range": (
        condition("lastInteractionAt", "between", ["2026-01-01T00:00:00Z", LATE]),
        "conditions[0].value",
    ),
    "integer beyond 64 bits on a column": (condition("conversationCount", "greaterThan", HUGE), "conditions[0].value"),
    "integer beyond 64 bits on an attribute": (
        condition("attributes.purchaseCount", "lessThan", -HUGE),
        "conditions[0].value",
    ),
    "integer beyond 64 bits in a list": (condition("messagesReceived", "in", [1, HUGE]), "conditions[0].value[1]"),
    "integer beyond 2^53": (condition("attributes.purchaseCount", "greaterThan", 2**60), "conditions[0].value"),
    "number beyond a double": (condition("attributes.purchaseCount", "greaterThan", 10**400), "conditions[0].value"),
    "NUL in a string": (condition("username", "contains", NUL), "conditions[0].value"),
    "NUL in an attribute value": (condition("attributes.tier", "equals", NUL), "conditions[0].value"),
    "NUL in a tag": (condition("tags", "contains", NUL), "conditions[0].value"),
    "NUL nested in a group": (
        [{"match": "any", "conditions": condition("displayName", "in", ["ok", NUL])}],
        "conditions[0].conditions[0].value[1]",
    ),
    "NUL in a field name": (condition("attributes.ti\u0000er", "equals", "x"), "conditions[0].field"),
    "an object as the operator": ([{"field": "username", "operator": {}, "value": "x"}], "conditions[0].operator"),
    "a list as the operator": ([{"field": "tags", "operator": ["in"], "value": ["x"]}], "conditions[0].operator"),
}


@pytest.fixture
def contacts_in_place(merchant):
    account = AccountFactory.create(merchant=merchant)
    ContactFactory.create(merchant=merchant, account=account, attributes={"purchaseCount": 3, "tier": "gold"})
    return account


@pytest.mark.parametrize(("conditions", "field"), SEGMENT_VALUES.values(), ids=SEGMENT_VALUES.keys())
def test_segment_create_refuses_the_value_and_saves_nothing(api, contacts_in_place, conditions, field):
    response = api.post(f"{BASE}/segments", {"name": "hostile", "conditions": conditions}, format="json")

    assert_names(response, field)
    assert not Segment.objects.exists()


@pytest.mark.parametrize(("conditions", "field"), SEGMENT_VALUES.values(), ids=SEGMENT_VALUES.keys())
def test_segment_update_refuses_the_value_and_keeps_the_old_conditions(api, contacts_in_place, conditions, field):
    kept = condition("attributes.purchaseCount", "greaterThan", 1)
    created = api.post(f"{BASE}/segments", {"name": "fine", "conditions": kept}, format="json")
    segment_id = created.json()["data"]["id"]

    response = api.put(f"{BASE}/segments/{segment_id}", {"name": "renamed", "conditions": conditions}, format="json")

    assert_names(response, field)
    segment = Segment.objects.get(pk=segment_id)
    assert (segment.name, segment.conditions) == ("fine", kept)


@pytest.mark.parametrize(
    ("conditions", "field"),
    [SEGMENT_VALUES[k] for k in ("impossible date", "date-time past 9999", "integer beyond 64 bits on a column")],
)
def test_a_stored_segment_with_a_hostile_value_previews_as_a_400_not_a_500(api, merchant, conditions, field):
    # given conditions saved before validation was this strict (or written by a back-office path)
    segment = Segment.objects.create(merchant=merchant, name="old", conditions=conditions)

    response = api.post(f"{BASE}/segments/{segment.pk}/preview")

    assert_names(response, field)


def test_a_segment_whose_count_fails_is_not_left_saved(api, merchant, monkeypatch):
    from contacts.services import segments

    def failing_count(segment):
        raise RuntimeError("the count query failed")

    monkeypatch.setattr(segments, "segment_count", failing_count)
    client = APIClient(raise_request_exception=False)
    client.credentials(**api._credentials)

    response = client.post(f"{BASE}/segments", {"name": "half", "conditions": []}, format="json")

    assert response.status_code == 500
    assert not Segment.objects.exists()


@pytest.mark.parametrize("query", ["limit=%00", "limit=1%002", "limit=99999999999999999999999"])
def test_preview_query_parameters_are_validated(api, merchant, query):
    segment = Segment.objects.create(merchant=merchant, name="all", conditions=[])

    assert_names(api.post(f"{BASE}/segments/{segment.pk}/preview?{query}"), "limit")


# --- query parameters -------------------------------------------------------------------------------------------

QUERIES = [
    ("/contacts", "search", "search"),
    ("/contacts", "tags", "tags"),
    ("/contacts", "accountId", "accountId"),
    ("/contacts", "tagsMatch", "tagsMatch"),
    ("/contacts", "skip", "skip"),
    ("/conversations", "search", "search"),
    ("/templates", "search", "search"),
    ("/campaigns", "status", "status"),
]


@pytest.mark.parametrize(("path", "name", "field"), QUERIES)
@pytest.mark.parametrize("raw", ["%00", "a%00b", "vip,%00"])
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(api, contacts_in_place, path, name, field, raw):
    assert_names(api.get(f"{BASE}{path}?{name}={raw}"), field)


def test_a_nul_in_an_unknown_query_parameter_is_a_400_naming_it(api):
    assert_names(api.get(f"{BASE}/contacts?whatever=x%00"), "whatever")


def test_a_nul_in_a_query_parameter_name_is_a_400(api):
    response = api.get(f"{BASE}/contacts?se%00arch=x")

    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"


def test_a_nul_in_a_path_segment_is_a_400(api, contacts_in_place):
    contact = Contact.objects.get()

    assert_names(api.delete(f"{BASE}/contacts/{contact.pk}/tags/vip%00"), "path")


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_a_malformed_content_length_on_the_api_is_no_500(length):
    response = Client().post(LOGIN, b'{"email": "a@b.c"}', content_type="application/json", CONTENT_LENGTH=length)

    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"


# --- contact attributes -----------------------------------------------------------------------------------------

ATTRIBUTES = {
    "NUL in a value": ({"tier": NUL}, "attributes.tier"),
    "NUL in a key": ({"ti\u0000er": "gold"}, "attributes.ti\u0000er"),
    "integer beyond 64 bits": ({"purchaseCount": HUGE}, "attributes.purchaseCount"),
    "integer beyond 2^53": ({"purchaseCount": 2**60}, "attributes.purchaseCount"),
}


@pytest.mark.parametrize(("attributes", "field"), ATTRIBUTES.values(), ids=ATTRIBUTES.keys())
def test_contact_attributes_refuse_the_value_and_change_nothing(api, contacts_in_place, attributes, field):
    contact = Contact.objects.get()

    response = api.put(f"{BASE}/contacts/{contact.pk}/attributes", {"attributes": attributes}, format="json")

    assert_names(response, field)
    contact.refresh_from_db()
    assert contact.attributes == {"purchaseCount": 3, "tier": "gold"}


def test_contact_update_refuses_a_nul_in_its_attributes(api, contacts_in_place):
    contact = Contact.objects.get()

    response = api.put(f"{BASE}/contacts/{contact.pk}", {"attributes": {"city": NUL}}, format="json")

    assert_names(response, "attributes.city")


def test_the_attribute_rules_refuse_a_nul_outside_the_api_too():
    from contacts.validation import validate_attribute_changes
    from mktx.api.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        validate_attribute_changes({"city": NUL})

    assert refused.value.details["field"] == "attributes.city"


# --- templates ----------------------------------------------------------------------------------------------------

TEMPLATES = {
    "NUL in an option label": (
        {"type": "quick_reply", "options": [{"label": NUL}]},
        "options[0].label",
    ),
    "NUL in option metadata": (
        {"type": "quick_reply", "options": [{"label": "Yes", "metadata": "x\u0000"}]},
        "options[0].metadata",
    ),
    "NUL in an option key": (
        {"type": "quick_reply", "options": [{"label": "Yes", "\u0000": "x"}]},
        "options[0].\u0000",
    ),
    "NUL in the content": ({"type": "text"}, "content"),
    "integer beyond 64 bits in an option": (
        {"type": "quick_reply", "options": [{"label": "Yes", "metadata": HUGE}]},
        "options[0].metadata",
    ),
}


@pytest.mark.parametrize(("extra", "field"), TEMPLATES.values(), ids=TEMPLATES.keys())
def test_template_create_refuses_the_value_and_saves_nothing(api, extra, field):
    content = NUL if field == "content" else "Pick one"
    body = {"name": "Quick", "content": content, "variables": [], **extra}

    response = api.post(f"{BASE}/templates", body, format="json")

    assert_names(response, field)
    assert not Template.objects.exists()


# --- campaign schedules (engineer h1 validates schedules in campaigns/) -------------------------------------------

SCHEDULES = [
    ("startAt", IMPOSSIBLE_DATETIME),
    ("startAt", LATE),
    ("startAt", EARLY),
    ("endAt", IMPOSSIBLE_DATETIME),
    ("endAt", LATE),
    ("endAt", EARLY),
    ("startAt", NUL),
]


@pytest.fixture
def campaign_parts(api, contacts_in_place):
    segment = api.post(f"{BASE}/segments", {"name": "all", "conditions": []}, format="json").json()["data"]["id"]
    body = {"name": "Promo", "type": "text", "content": "Hi {{code}}", "variables": ["code"]}
    template = api.post(f"{BASE}/templates", body, format="json").json()["data"]["id"]
    return {
        "name": "January Promotion",
        "type": "promotional",
        "templateId": template,
        "segmentIds": [segment],
        "variables": {"code": "JAN10"},
    }


def _schedule(key: str, value: str | None) -> dict:
    schedule = {"startAt": "2030-01-20T10:00:00Z", "endAt": None, "recurrence": None}
    schedule[key] = value
    return schedule


@pytest.mark.parametrize(("key", "value"), SCHEDULES)
def test_campaign_create_refuses_the_schedule_value(api, campaign_parts, key, value):
    response = api.post(f"{BASE}/campaigns", {**campaign_parts, "schedule": _schedule(key, value)}, format="json")

    assert_names(response, f"schedule.{key}")


@pytest.mark.parametrize(("key", "value"), SCHEDULES)
def test_campaign_update_refuses_the_schedule_value(api, campaign_parts, key, value):
    created = api.post(f"{BASE}/campaigns", {**campaign_parts, "schedule": _schedule("endAt", None)}, format="json")
    campaign_id = created.json()["data"]["id"]

    response = api.put(f"{BASE}/campaigns/{campaign_id}", {"schedule": _schedule(key, value)}, format="json")

    assert_names(response, f"schedule.{key}")


# --- the JSON parser: nesting, on every endpoint, authenticated or not ----------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [65, 5000, 100_000])
def test_login_refuses_deeply_nested_json(depth):
    body = '{"email": ' + nested(depth) + ', "password": "x"}'

    response = Client().post(LOGIN, body, content_type="application/json")

    assert_names(response, "email")


@pytest.mark.parametrize("sign", ["", "-"])
def test_a_number_of_thousands_of_digits_is_named_and_says_nothing_of_python(sign):
    body = '{"email": ' + sign + "9" * 5000 + ', "password": "x"}'

    response = Client().post(LOGIN, body, content_type="application/json")

    assert_names(response, "email")
    assert "sys." not in response.content.decode()


def test_an_unterminated_string_before_deep_nesting_is_refused_in_linear_time():
    # an unclosed quote followed by many escaped quotes made the nesting scan quadratic (17 s for 64 KB)
    body = '{"email": "' + '\\"' * 300_000 + "[" * 65

    started = time.monotonic()
    response = Client().post(LOGIN, body, content_type="application/json")
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert elapsed < 2.0


@pytest.mark.parametrize("charset", ["rot13", "zlib", "base64", "hex"])
def test_a_charset_that_is_not_a_text_encoding_is_a_400_naming_the_content_type(charset):
    body = json.dumps({"email": "a@b.test", "password": "x"}).encode()

    response = Client().generic("POST", LOGIN, body, content_type=f"application/json; charset={charset}")

    assert_names(response, "Content-Type")


def test_json_in_utf_16_still_parses():
    body = json.dumps({"email": "nobody@shop.test", "password": "wrong-one"}).encode("utf-16")

    response = Client().generic("POST", LOGIN, body, content_type="application/json; charset=utf-16")

    assert response.status_code == 401


def test_deep_nesting_at_the_top_is_named_body():
    assert_names(Client().post(LOGIN, nested(10_000), content_type="application/json"), "body")


def test_deep_nesting_is_refused_on_authenticated_endpoints_too(api):
    body = '{"name": "x", "conditions": [' + '{"match": "any", "conditions": [' * 40 + "]}" * 40 + "]}"

    response = api.generic("POST", f"{BASE}/segments", body, content_type="application/json")

    assert_names(response, "conditions")


def test_nesting_up_to_the_limit_still_parses(api):
    body = json.dumps({"email": json.loads(nested(63)), "password": "x"})

    response = Client().post(LOGIN, body, content_type="application/json")

    assert response.status_code != 500
    assert response.json().get("details", {}).get("reason", "").find("nest") == -1


def test_login_refuses_a_nul_in_the_email():
    response = Client().post(LOGIN, json.dumps({"email": NUL, "password": "x"}), content_type="application/json")

    assert_names(response, "email")


def test_brackets_inside_strings_do_not_count_as_nesting(api):
    contact_name = "[" * 200 + "{" * 200

    response = Client().post(
        LOGIN, json.dumps({"email": contact_name, "password": "x"}), content_type="application/json"
    )

    assert response.status_code in (400, 401) and "nest" not in response.content.decode()


# --- the webhook ------------------------------------------------------------------------------------------------


def _dm(text: str, event_id: str = "1001") -> dict:
    return {
        "for_user_id": SHOP_ID,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": event_id,
                "created_timestamp": "1700000000000",
                "message_create": {
                    "target": {"recipient_id": SHOP_ID},
                    "sender_id": "777",
                    "message_data": {"text": text, "entities": {"hashtags": [], "urls": []}},
                },
            }
        ],
        "users": {
            "777": {"id": "777", "name": "Nul\u0000 Customer", "screen_name": "nul_customer"},
            SHOP_ID: {"id": SHOP_ID, "name": "Shop", "screen_name": "goodgo_shop"},
        },
    }


def deliver(body: bytes, **extra):
    headers = {"x-twitter-webhooks-signature": sign(SECRET, body)}
    return Client().post(HOOK, body, content_type="application/json", headers=headers, **extra)


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " "])
def test_a_webhook_with_a_malformed_content_length_is_a_400_naming_it(length):
    body = json.dumps(_dm("hello")).encode()

    response = deliver(body, CONTENT_LENGTH=length)

    assert_names(response, "Content-Length")
    assert not InboundEvent.objects.exists()


def test_a_signed_webhook_with_nul_is_stored_and_processed_without_the_nul(
    merchant, sandbox, django_capture_on_commit_callbacks
):
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")
    body = json.dumps(_dm("Hello\u0000 there \u0000")).encode()
    assert b"\\u0000" in body

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(body)

    assert response.status_code == 200, response.content
    event = InboundEvent.objects.get()
    assert event.status == "processed", (event.status, event.status_reason, event.last_error)
    assert event.payload["direct_message_events"][0]["message_create"]["message_data"]["text"] == "Hello there "
    message = Message.objects.get(direction="inbound")
    assert message.content == "Hello there "
    assert message.conversation.contact.display_name == "Nul Customer"


def test_a_signed_webhook_nested_too_deep_is_refused_not_a_500():
    body = ('{"for_user_id": "1", "x": ' + nested(5000) + "}").encode()

    response = deliver(body)

    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    assert not InboundEvent.objects.exists()
