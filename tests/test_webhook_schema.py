"""X's side of the API in the OpenAPI document and the Postman collection (issue 12, point 5): the CRC challenge on
both paths and the signed deliveries, documented as the plain views answer them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema
from werkzeug.test import Client as WsgiClient

from tests.fuzz_world import SCHEMA_URL, connection_kept, served_schema
from webhooks_app.signatures import sign

pytestmark = pytest.mark.django_db

HOOK = "/api/v1/mkt-x/webhooks/twitter"
VERIFY = "/api/v1/mkt-x/webhooks/verify"
POSTMAN = "/api/v1/mkt-x/postman-collection.json"
SECRET = "schema-test-secret"
TOKEN = "aBcDeFgHiJkLmNoPqRsT-_=+/"
CRC_STATUSES = {"200", "400", "503"}
DELIVERY_STATUSES = {"200", "400", "401", "413", "503"}
DELIVERY = {
    "for_user_id": "4337869213",
    "direct_message_events": [
        {
            "type": "message_create",
            "id": "1642000000000000001",
            "created_timestamp": "1642000000000",
            "message_create": {
                "sender_id": "987654321",
                "target": {"recipient_id": "4337869213"},
                "message_data": {"text": "Hello!", "entities": {}},
            },
        }
    ],
    "users": {"987654321": {"id": "987654321", "screen_name": "customer_john", "name": "John Doe"}},
}


def _schema() -> dict[str, Any]:
    response = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    return schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node


def _json_body(schema: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    return _resolve(schema, response["content"]["application/json"]["schema"])


def _requests_by_operation(collection: dict[str, Any]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    return {
        (item["request"]["method"], item["request"]["url"]["raw"]): (folder["name"], item["request"])
        for folder in collection["item"]
        for item in folder["item"]
    }


@pytest.mark.parametrize(("path", "operation_id"), [(VERIFY, "webhooks_verify_crc"), (HOOK, "webhooks_twitter_crc")])
def test_the_schema_documents_the_crc_answer_outside_the_envelope(path: str, operation_id: str) -> None:
    schema = _schema()
    operation = schema["paths"][path]["get"]

    assert operation["operationId"] == operation_id
    assert operation["tags"] == ["webhooks"]
    assert operation["security"] == []  # X calls it: no JWT
    assert set(operation["responses"]) == CRC_STATUSES
    token = next(p for p in operation["parameters"] if p["name"] == "crc_token")
    assert token["in"] == "query" and token["required"] is True
    assert token["schema"]["pattern"] == "^[A-Za-z0-9+/=_-]{16,128}$"
    answer = _json_body(schema, operation["responses"]["200"])
    assert answer["required"] == ["response_token"]
    assert set(answer["properties"]) == {"response_token"}  # the bare object X reads, not {success, data}
    for status in ("400", "503"):
        assert _json_body(schema, operation["responses"][status]) == schema["components"]["schemas"]["ErrorEnvelope"]


def test_the_schema_documents_the_signed_delivery_and_each_refusal() -> None:
    schema = _schema()
    operation = schema["paths"][HOOK]["post"]

    assert operation["operationId"] == "webhooks_twitter_receive"
    assert operation["tags"] == ["webhooks"]
    assert operation["security"] == []
    assert set(operation["responses"]) == DELIVERY_STATUSES
    signature = next(p for p in operation["parameters"] if p["in"] == "header")
    assert signature["name"] == "x-twitter-webhooks-signature" and signature["required"] is True
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"for_user_id", "direct_message_events", "follow_events", "users"} <= set(body["properties"])
    assert body["example"]["direct_message_events"][0]["type"] == "message_create"
    ok = _json_body(schema, operation["responses"]["200"])
    assert set(ok["properties"]) == {"success", "data"}
    assert ok["properties"]["data"]["required"] == ["received"]
    assert ok["properties"]["data"]["properties"]["received"]["type"] == "integer"
    for status in DELIVERY_STATUSES - {"200"}:
        assert _json_body(schema, operation["responses"][status]) == schema["components"]["schemas"]["ErrorEnvelope"]
    assert "x-mktx-responses-as-sent" not in operation  # the hook's marker is consumed


def test_the_schema_with_the_webhooks_is_still_valid_openapi(tmp_path: Path) -> None:
    validate_schema(_schema())  # raises on an invalid document

    # and as the project checks it: drf-spectacular's own validation, any warning an error
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    document = yaml.safe_load(out.read_text())
    assert {(method, path) for path in (HOOK, VERIFY) for method in document["paths"][path]} == {
        ("get", HOOK),
        ("post", HOOK),
        ("get", VERIFY),
    }


def test_the_postman_collection_has_the_webhook_requests_without_a_jwt() -> None:
    requests = _requests_by_operation(Client().get(POSTMAN).json())

    for method, path in (("GET", VERIFY), ("GET", HOOK), ("POST", HOOK)):
        folder, request = requests[(method, "{{baseUrl}}" + path)]
        assert folder == "webhooks"
        assert request["auth"] == {"type": "noauth"}
    for path in (VERIFY, HOOK):
        _, crc = requests[("GET", "{{baseUrl}}" + path)]
        token = next(q for q in crc["url"]["query"] if q["key"] == "crc_token")
        assert token["disabled"] is False and token["value"] == "aBcDeFgHiJkLmNoPqRsT"
    _, delivery = requests[("POST", "{{baseUrl}}" + HOOK)]
    assert "x-twitter-webhooks-signature" in {h["key"] for h in delivery["header"]}
    assert json.loads(delivery["body"]["raw"])["direct_message_events"][0]["message_create"]["sender_id"]


def _post(body: bytes, **headers: str) -> Any:
    from mktx.wsgi import application

    return WsgiClient(application).post(HOOK, data=body, headers=headers, content_type="application/json")


def _signed(body: bytes, secret: str = SECRET) -> Any:
    return _post(body, **{"x-twitter-webhooks-signature": sign(secret, body)})


def _crc(path: str, token: str) -> Any:
    from mktx.wsgi import application

    return WsgiClient(application).get(path, query_string={"crc_token": token, "nonce": "n"})


def test_each_answer_of_the_webhook_endpoints_is_the_documented_one(settings: Any) -> None:
    # given: the secret X signs with, and a small webhook body limit
    settings.X_CONSUMER_SECRET = SECRET
    settings.MKTX_WEBHOOK_MAX_BYTES = 1024
    raw = json.dumps(DELIVERY).encode()

    with connection_kept():
        schema = served_schema()
        crc = {path: schema.find_operation_by_label(f"GET {path}") for path in (VERIFY, HOOK)}
        receive = schema.find_operation_by_label(f"POST {HOOK}")
        # when: each way the views answer
        answers = [
            (crc[VERIFY], _crc(VERIFY, TOKEN), 200),
            (crc[HOOK], _crc(HOOK, TOKEN), 200),
            (crc[VERIFY], _crc(VERIFY, "short"), 400),
            (receive, _signed(raw), 200),
            (receive, _signed(b"not json"), 400),
            (receive, _post(raw), 401),
            (receive, _signed(raw, secret="forged"), 401),
            (receive, _signed(json.dumps({**DELIVERY, "pad": "x" * 2000}).encode()), 413),
        ]
        settings.X_CONSUMER_SECRET = ""
        answers += [(crc[HOOK], _crc(HOOK, TOKEN), 503), (receive, _signed(raw), 503)]

    # then: each status is documented and the body fits what the schema says of it
    for operation, response, status in answers:
        assert response.status_code == status, (operation.label, status, response.get_data(as_text=True))
        assert str(status) in operation.definition.raw["responses"], (operation.label, status)
        operation.validate_response(response)
    assert answers[0][1].get_json() == {"response_token": sign(SECRET, TOKEN.encode())}
    assert answers[3][1].get_json() == {"success": True, "data": {"received": 1}}


def test_the_webhook_endpoints_stay_outside_drf_whatever_the_authorization_or_accept(settings: Any) -> None:
    # DRF would answer a bad bearer token 401 and an Accept it cannot render 406: X's requests never meet either.
    settings.X_CONSUMER_SECRET = SECRET
    headers = {"Authorization": "Bearer not-a-jwt", "Accept": "text/html"}
    raw = json.dumps(DELIVERY).encode()
    signed = {**headers, "x-twitter-webhooks-signature": sign(SECRET, raw)}

    answered = Client().get(VERIFY, {"crc_token": TOKEN}, headers=headers)
    received = Client().post(HOOK, raw, content_type="application/json", headers=signed)

    assert answered.status_code == 200
    assert answered.json() == {"response_token": sign(SECRET, TOKEN.encode())}
    assert received.status_code == 200
    assert received.json() == {"success": True, "data": {"received": 1}}
