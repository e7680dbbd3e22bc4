"""Schemathesis against the live OpenAPI schema: every documented operation, fed generated inputs through the real
middleware stack with a real owner's token, answers no 5xx and only what its schema documents."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import schemathesis
from django.test import Client
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.converter import to_json_schema

from campaigns.models import Campaign, Template
from contacts.models import Conversation, Segment
from contacts.services.contacts import contact_tags_add
from tests.campaign_helpers import connect, customer
from tests.factories import AccountFactory, ContactFactory, ConversationFactory, MessageFactory, access_token
from tests.fuzz_world import (
    SCHEMA_URL,
    STATEFUL_SETTINGS,
    WEBHOOK_URL,
    FuzzWorld,
    build_world,
    connection_kept,
    fuzz_schema_for,
    served_schema,
    signed_as_x,
    stateful_workflow,
    wsgi_call,
    wsgi_get,
    wsgi_post,
)

pytestmark = pytest.mark.django_db
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def world(sandbox, settings) -> FuzzWorld:
    return build_world(sandbox, settings)


@pytest.fixture
def api_schema(world: FuzzWorld) -> Any:
    return fuzz_schema_for(world)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 renames the running test per operation through `node._nodeid`, which pytest 9.2 no longer
    # has (it keeps `_id`); give it one so that its reporting works. Only the report's labels depend on it.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


# Committed data and autocommit requests, as in production: a database error in one request must not poison the
# transaction every later request of the run would share.
@pytest.mark.django_db(transaction=True)
@schema.parametrize()
def test_it_answers_every_operation_without_a_server_error_and_as_documented(case: Any, world: FuzzWorld) -> None:
    case.call_and_validate(headers=world.headers, checks=CHECKS)


def test_it_fuzzes_the_webhook_operations_with_deliveries_signed_as_x_and_forged(world: FuzzWorld) -> None:
    with connection_kept():  # loading the schema runs a request too: its end must not close the test's connection
        # given: the fuzzed schema holds X's side of the API, and a delivery with a made-up signature
        schema = fuzz_schema_for(world)
        labels = {result.ok().label for result in schema.get_all_operations()}
        assert {f"GET {WEBHOOK_URL}", f"POST {WEBHOOK_URL}", "GET /api/v1/mkt-x/webhooks/verify"} <= labels
        operation = schema.find_operation_by_label(f"POST {WEBHOOK_URL}")
        body = {"for_user_id": "1", "follow_events": []}
        forged = operation.Case(body=body, headers={"x-twitter-webhooks-signature": "x"})

        # when: it is sent as it is, and signed as the fuzz run signs half of its deliveries
        refused = forged.call()
        accepted = signed_as_x(forged).call()

    # then: the forged one is the documented 401 and the signed one is stored, both as the schema says
    assert refused.status_code == 401
    assert accepted.status_code == 200, accepted.text
    for response in (refused, accepted):
        operation.validate_response(response)


def _documented_statuses(schema: dict[str, Any], method: str, path: str) -> set[str]:
    return {status for status in schema["paths"][path][method]["responses"] if status.startswith("2")}


def test_it_documents_the_success_status_that_creates_and_tag_removal_answer(api: Any, merchant: Any) -> None:
    # given: the schema as served, and a contact with a tag
    schema = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    contact = ContactFactory.create(account=AccountFactory.create(merchant=merchant), merchant=merchant)
    contact_tags_add(contact=contact, tags=["vip"])
    base = "/api/v1/mkt-x"

    # when: each write is made as the reference shows it
    template = api.post(f"{base}/templates", {"name": "T", "type": "text", "content": "Hi"}, format="json")
    segment = api.post(f"{base}/segments", {"name": "S", "conditions": []}, format="json")
    body = {"name": "C", "type": "promotional", "templateId": template.json()["data"]["id"]}
    campaign = api.post(f"{base}/campaigns", {**body, "segmentIds": [segment.json()["data"]["id"]]}, format="json")
    untagged = api.delete(f"{base}/contacts/{contact.id}/tags/vip")

    # then: the schema documents the status each one answered, and only that success status
    answered = {
        ("post", "/templates"): template.status_code,
        ("post", "/segments"): segment.status_code,
        ("post", "/campaigns"): campaign.status_code,
        ("delete", "/contacts/{id}/tags/{tag_name}"): untagged.status_code,
    }
    for (method, path), status in answered.items():
        assert status == 200, (method, path, status)
        assert _documented_statuses(schema, method, base + path) == {"200"}, (method, path)


def test_it_documents_profile_image_urls_that_x_left_empty(merchant: Any, owner: Any) -> None:
    # given: an account and a contact whose X profiles have no image
    account = AccountFactory.create(merchant=merchant, profile_image_url="")
    contact = ContactFactory.create(account=account, merchant=merchant, profile_image_url="")
    ConversationFactory.create(contact=contact)
    base = "/api/v1/mkt-x"

    with connection_kept():
        schema = served_schema()
        for label, url in [
            ("GET /api/v1/mkt-x/accounts/{id}", f"{base}/accounts/{account.id}"),
            ("GET /api/v1/mkt-x/contacts", f"{base}/contacts"),
            ("GET /api/v1/mkt-x/contacts/{id}", f"{base}/contacts/{contact.id}"),
            ("GET /api/v1/mkt-x/conversations", f"{base}/conversations"),
        ]:
            # when
            response = wsgi_get(url, owner)

            # then: the empty URL is what the schema allows
            assert response.status_code == 200, (label, response.get_data(as_text=True))
            assert '"profileImageUrl":""' in response.get_data(as_text=True), label
            schema.find_operation_by_label(label).validate_response(response)


def test_it_documents_the_conversation_detail_with_and_without_its_messages(merchant: Any, owner: Any) -> None:
    # given: a conversation with messages
    account = AccountFactory.create(merchant=merchant)
    conversation = ConversationFactory.create(contact=ContactFactory.create(account=account, merchant=merchant))
    MessageFactory.create_batch(3, conversation=conversation)
    url = f"/api/v1/mkt-x/conversations/{conversation.id}"

    with connection_kept():
        operation = served_schema().find_operation_by_label("GET /api/v1/mkt-x/conversations/{id}")
        # when
        paged = wsgi_get(f"{url}?messagesTake=2", owner)
        bare = wsgi_get(f"{url}?includeMessages=false", owner)

    # then: both shapes are what the schema says, the count as an integer
    assert paged.status_code == 200 and bare.status_code == 200
    assert paged.get_json()["data"]["messagesTotal"] == 3
    assert len(paged.get_json()["data"]["messages"]) == 2
    assert "messages" not in bare.get_json()["data"]
    operation.validate_response(paged)
    operation.validate_response(bare)


REFERENCE_SEGMENT = {
    "name": "VIP Customers",
    "conditions": [
        {"field": "tags", "operator": "contains", "value": "vip"},
        {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": 5},
        {"field": "lastInteractionAt", "operator": "after", "value": "2026-01-01T00:00:00Z"},
    ],
}


@pytest.mark.parametrize(
    "conditions",
    [
        [{"field": "tags", "operator": "contains", "value": "vip", "weight": 2}],
        [{"field": "shoeSize", "operator": "equals", "value": 1}],
        [{"field": "tags", "operator": "sortOf", "value": "vip"}],
        [{"match": "some", "conditions": [{"field": "tags", "operator": "exists"}]}],
        {"field": "tags", "operator": "exists"},
    ],
)
def test_it_documents_the_segment_conditions_the_api_accepts(api: Any, conditions: Any) -> None:
    # given: the documented shape of a segment's conditions
    validator = _documented("SegmentInputRequest", "conditions")

    # when / then: the reference's example fits it and is accepted ...
    assert validator.is_valid(REFERENCE_SEGMENT["conditions"])
    assert api.post("/api/v1/mkt-x/segments", REFERENCE_SEGMENT, format="json").status_code == 200
    # ... and what the API refuses, the schema refuses too
    assert not validator.is_valid(conditions)
    refused = api.post("/api/v1/mkt-x/segments", {"name": "S", "conditions": conditions}, format="json")
    assert refused.status_code == 400
    assert refused.json()["details"]["field"].startswith("conditions")


@pytest.mark.django_db(transaction=True)
def test_it_answers_workflows_that_chain_one_answer_into_the_next_call(world: FuzzWorld) -> None:
    """Schemathesis' stateful phase: the links it infers between operations (a created template's id into its
    preview, update and delete...) are followed, with the same checks."""
    workflow = stateful_workflow(world, CHECKS)

    with connection_kept():  # each scenario runs in a transaction that the end of a request must not close
        workflow.run(settings=STATEFUL_SETTINGS)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", {"email": "user1@shop.test", "password": "not-the-password"}),
        ("/api/v1/auth/refresh", {"refreshToken": "not-a-token"}),
    ],
)
def test_it_documents_the_401_of_a_refused_login_or_refresh(owner: Any, path: str, body: dict[str, Any]) -> None:
    with connection_kept():
        operation = served_schema().find_operation_by_label(f"POST {path}")
        # when
        refused = wsgi_post(path, body)

    # then: the 401 and its envelope are in the schema
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "UNAUTHORIZED"
    assert "401" in operation.definition.raw["responses"]
    operation.validate_response(refused)


def test_it_documents_the_409_of_deleting_a_template_or_segment_a_campaign_uses(merchant: Any, owner: Any) -> None:
    # given: a scheduled campaign on a template and a segment
    template = Template.objects.create(merchant=merchant, name="t", content="hi")
    segment = Segment.objects.create(merchant=merchant, name="s", conditions=[])
    campaign = Campaign.objects.create(merchant=merchant, name="c", template=template, status="scheduled")
    campaign.segments.add(segment)

    with connection_kept():
        schema = served_schema()
        for kind, pk in (("templates", template.pk), ("segments", segment.pk)):
            # when
            refused = wsgi_call("DELETE", f"/api/v1/mkt-x/{kind}/{pk}", owner)

            # then: the 409 and its envelope are in the schema
            assert refused.status_code == 409, kind
            assert refused.get_json()["code"] == "RESOURCE_IN_USE"
            operation = schema.find_operation_by_label(f"DELETE /api/v1/mkt-x/{kind}/{{id}}")
            assert "409" in operation.definition.raw["responses"], kind
            operation.validate_response(refused)


def test_it_documents_the_502_of_an_x_failure_on_the_operations_that_call_x(owner: Any, sandbox: Any) -> None:
    # given: a connected shop with a customer, and X failing its next calls
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(owner)}")
    shop = connect(client, sandbox)
    person = customer(sandbox, shop, "ann_buyer")
    conversation = Conversation.objects.get(contact=person["contact"])
    newcomer = sandbox.user("new_shop")
    calls = [
        ("POST", "/api/v1/mkt-x/accounts", {k: newcomer[k] for k in ("oauthToken", "oauthTokenSecret")}),
        ("POST", "/api/v1/mkt-x/conversations/{id}/messages", {"content": "Hello"}),
        ("DELETE", "/api/v1/mkt-x/accounts/{id}", None),
    ]
    ids = {
        "/api/v1/mkt-x/conversations/{id}/messages": conversation.id,
        "/api/v1/mkt-x/accounts/{id}": shop["account"].id,
    }

    with connection_kept():
        schema = served_schema()
        for method, path, body in calls:
            sandbox.fault(pathPrefix="/2/", status=500, times=10)
            # when
            refused = wsgi_call(method, path.replace("{id}", str(ids.get(path, ""))), owner, json=body)
            sandbox.server.sandbox.faults.clear()

            # then: the 502 and its envelope are in the schema
            assert refused.status_code == 502, (path, refused.get_json())
            assert refused.get_json()["code"] == "TWITTER_API_ERROR"
            operation = schema.find_operation_by_label(f"{method} {path}")
            assert "502" in operation.definition.raw["responses"], path
            operation.validate_response(refused)


def _documented(component: str, prop: str) -> jsonschema.Draft4Validator:
    schema = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    documented = schema["components"]["schemas"][component]["properties"][prop]
    # as schemathesis reads it: OpenAPI 3.0's `nullable` made JSON Schema
    return jsonschema.Draft4Validator(
        to_json_schema(documented, nullable_keyword="nullable"), format_checker=jsonschema.FormatChecker()
    )


@pytest.mark.parametrize(
    ("component", "prop", "good", "bad"),
    [
        (
            "CampaignInputRequest",
            "schedule",
            {"startAt": "2026-01-20T10:00:00Z", "endAt": None, "recurrence": None},
            {"startAt": None, "every": "day"},
        ),
        (
            "CampaignInputRequest",
            "schedule",
            {"recurrence": {"frequency": "weekly", "interval": 2, "until": "2027-03-31"}},
            {"recurrence": {"frequency": "hourly"}},
        ),
        ("TagsInputRequest", "tags", ["vip", "premium"], []),
        (
            "AttributesInputRequest",
            "attributes",
            {"purchaseCount": 6, "lastPurchaseDate": "2026-01-18", "tier": "gold"},
            {"city": ["Lisbon"]},
        ),
        ("TemplateInputRequest", "variables", ["code"], "code"),
        ("TemplateInputRequest", "options", [{"label": "Yes", "metadata": "y"}], [{"label": "Yes", "colour": "red"}]),
        (
            "TemplateInputRequest",
            "card",
            {"imageUrl": "https://example.com/a.png", "buttons": []},
            {"imageUrl": "http://x"},
        ),
    ],
)
def test_it_documents_schedules_tags_attributes_and_template_parts_as_the_api_checks_them(
    api: Any, merchant: Any, component: str, prop: str, good: Any, bad: Any
) -> None:
    # given: a contact, a template and the documented shape of the property
    contact = ContactFactory.create(account=AccountFactory.create(merchant=merchant), merchant=merchant)
    template = Template.objects.create(merchant=merchant, name="t", content="hi")
    validator = _documented(component, prop)
    base = "/api/v1/mkt-x"

    def call(value: Any) -> Any:
        if prop == "schedule":
            body = {"name": "C", "type": "promotional", "templateId": str(template.id), "segmentIds": [], prop: value}
            return api.post(f"{base}/campaigns", body, format="json")
        if prop == "tags":
            return api.post(f"{base}/contacts/{contact.id}/tags", {prop: value}, format="json")
        if component == "TemplateInputRequest":
            kind = {"options": "quick_reply", "card": "card"}.get(prop, "text")
            body = {"name": "T", "type": kind, "content": "Use {{code}}", "variables": ["code"], prop: value}
            return api.post(f"{base}/templates", body, format="json")
        return api.put(f"{base}/contacts/{contact.id}/attributes", {prop: value}, format="json")

    # when / then: what the schema allows is accepted, and what the API refuses the schema refuses too
    assert validator.is_valid(good)
    assert call(good).status_code == 200
    assert not validator.is_valid(bad)
    refused = call(bad)
    assert refused.status_code == 400
    assert refused.json()["details"]["field"].startswith(prop)


def test_it_documents_the_results_of_a_test_send(owner: Any, sandbox: Any) -> None:
    # given: a campaign of a connected shop and two of its customers, one opted out
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(owner)}")
    shop = connect(client, sandbox)
    ann, bob = customer(sandbox, shop, "ann_buyer"), customer(sandbox, shop, "bob_buyer")
    bob["contact"].__class__.objects.filter(pk=bob["contact"].pk).update(opted_out=True)
    template = client.post("/api/v1/mkt-x/templates", {"name": "T", "content": "Hi"}, format="json").json()["data"]
    body = {"name": "C", "type": "promotional", "templateId": template["id"], "segmentIds": []}
    campaign = client.post("/api/v1/mkt-x/campaigns", body, format="json").json()["data"]
    contact_ids = [str(ann["contact"].id), str(bob["contact"].id)]

    with connection_kept():
        operation = served_schema().find_operation_by_label("POST /api/v1/mkt-x/campaigns/{id}/test")
        # when
        sent = wsgi_call(
            "POST", f"/api/v1/mkt-x/campaigns/{campaign['id']}/test", owner, json={"contactIds": contact_ids}
        )

    # then: one result a contact, in the shape the schema documents
    assert sent.status_code == 200, sent.get_json()
    results = sent.get_json()["data"]["results"]
    assert [r["status"] for r in results] == ["sent", "skipped"]
    data = operation.definition.raw["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
    components = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]
    documented = components["schemas"][data["$ref"].rsplit("/", 1)[-1]] if "$ref" in data else data
    assert documented.get("required") == ["results"], documented
    operation.validate_response(sent)


def test_it_documents_campaign_metrics(merchant: Any, owner: Any) -> None:
    # given: a campaign
    template = Template.objects.create(merchant=merchant, name="t", content="hi")
    campaign = Campaign.objects.create(merchant=merchant, name="c", template=template)

    with connection_kept():
        operation = served_schema().find_operation_by_label("GET /api/v1/mkt-x/campaigns/{id}/metrics")
        # when
        metrics = wsgi_get(f"/api/v1/mkt-x/campaigns/{campaign.id}/metrics", owner)

    # then: the reference's counts, rates and timeline are documented, and the answer fits
    assert metrics.status_code == 200
    data = operation.definition.raw["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
    components = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]
    documented = components["schemas"][data["$ref"].rsplit("/", 1)[-1]] if "$ref" in data else data
    reference = {"totalSent", "delivered", "opened", "clicked", "replied", "failed", "openRate", "clickRate"}
    assert reference | {"replyRate", "deliveryRate", "timeline"} <= set(documented.get("required", [])), documented
    operation.validate_response(metrics)
