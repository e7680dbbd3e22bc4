"""The world the schemathesis run fuzzes: a merchant with a connected account, contacts with tags and
conversations, a template, a segment and a campaign, all made through the real paths, and the schema loaded from
the service itself (the real WSGI application, middleware included) with that merchant's owner's token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from rest_framework.test import APIClient

from contacts.models import Conversation
from mktx.iam.models import Role
from tests.campaign_helpers import connect, customer
from tests.factories import MerchantFactory, UserFactory, access_token
from webhooks_app.signatures import sign
from webhooks_app.webhook_schema import SIGNATURE_HEADER

SCHEMA_URL = "/api/v1/mkt-x/schema/"
WEBHOOK_URL = "/api/v1/mkt-x/webhooks/twitter"
MAX_EXAMPLES = 25
# Fixed so that CI sees the same inputs on every run; change it to explore other corners locally.
SEED = 20261201


# Body keys that hold ids, and the kind of thing each names.
BODY_IDS = {
    "templateId": "templates",
    "segmentIds": "segments",
    "contactId": "contacts",
    "contactIds": "contacts",
    "userId": "users",
}


@dataclass
class FuzzWorld:
    token: str
    ids: dict[str, list[str]] = field(default_factory=dict)  # path parameter kind -> real values
    expendable: dict[str, list[str]] = field(default_factory=dict)  # the same, for deletes and cancels

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def body_values(self, key: str) -> list[Any]:
        ids = self.ids.get(BODY_IDS[key], [])
        return [ids] if key.endswith("Ids") and ids else ids


def _data(response: Any) -> Any:
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def build_world(sandbox: Any, settings: Any) -> FuzzWorld:
    # The per-merchant limit (100/minute) would answer 429 to most of the run and leave the rest of the API unfuzzed.
    settings.MKTX_API_RATE_LIMIT = (100_000, 60)
    settings.MKTX_LOGIN_RATE_LIMIT = (100_000, 60)
    merchant = MerchantFactory.create()
    owner = UserFactory.create(merchant=merchant, role=Role.OWNER)
    token = access_token(owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    kept = _things(api, sandbox, "goodgo_shop", ["ann_buyer", "bob_buyer", "cid_buyer"])
    # Deletes and cancels get things of their own: the operations fuzzed after them keep theirs.
    expendable = _things(api, sandbox, "second_shop", ["dee_buyer", "eve_buyer"])
    for ids in (kept, expendable):
        ids["users"] = [str(owner.id)]
        ids["tag_name"] = ["vip", "wholesale"]
    return FuzzWorld(token=token, ids=kept, expendable=expendable)


def _things(api: APIClient, sandbox: Any, shop_name: str, customers: list[str]) -> dict[str, list[str]]:
    """A connected account with customers (contacts and conversations made by the inbound path), a template, a
    segment and a draft campaign on them, by kind."""
    shop = connect(api, sandbox, shop_name)
    tags = [("vip",), ("vip", "wholesale"), ()]
    people = [
        customer(sandbox, shop, name, *tags[n % 3], city="Lisbon", purchaseCount=n) for n, name in enumerate(customers)
    ]
    template = _data(
        api.post(
            "/api/v1/mkt-x/templates",
            {"name": "Welcome", "type": "text", "content": "Hi {{name}}, use {{code}}", "variables": ["name", "code"]},
            format="json",
        )
    )
    segment = _data(
        api.post(
            "/api/v1/mkt-x/segments",
            {"name": "VIP", "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}]},
            format="json",
        )
    )
    campaign = _data(
        api.post(
            "/api/v1/mkt-x/campaigns",
            {
                "name": "January",
                "type": "promotional",
                "templateId": template["id"],
                "segmentIds": [segment["id"]],
                "variables": {"code": "JAN10"},
            },
            format="json",
        )
    )
    contacts = [person["contact"] for person in people]
    flow, execution = _flow(api, template["id"], contacts[0].pk)
    return {
        "automation": [flow],
        "execution_id": [execution],
        "accounts": [str(shop["account"].id)],
        "contacts": [str(contact.id) for contact in contacts],
        "conversations": [
            str(pk) for pk in Conversation.objects.filter(contact__in=contacts).values_list("pk", flat=True)
        ],
        "templates": [template["id"]],
        "segments": [segment["id"]],
        "campaigns": [campaign["id"]],
    }


def _flow(api: APIClient, template_id: str, contact_id: Any) -> tuple[str, str]:
    """An active manual flow (send the template, wait a day, tag) with one contact enrolled: its id, the
    execution's."""
    nodes = [
        {"id": "send", "type": "send_message", "config": {"templateId": template_id, "variables": {"code": "F10"}}},
        {"id": "wait", "type": "wait", "config": {"duration": 86400}},
        {"id": "tag", "type": "add_tag", "config": {"tags": ["flowed"]}},
    ]
    body = {
        "name": "Welcome flow",
        "trigger": {"type": "manual", "config": {}},
        "nodes": nodes,
        "connections": [{"fromNodeId": "send", "toNodeId": "wait"}, {"fromNodeId": "wait", "toNodeId": "tag"}],
    }
    flow = _data(api.post("/api/v1/mkt-x/automation/flows", body, format="json"))["id"]
    _data(api.post(f"/api/v1/mkt-x/automation/flows/{flow}/activate"))
    enrolled = _data(
        api.post(f"/api/v1/mkt-x/automation/flows/{flow}/enroll", {"contactIds": [str(contact_id)]}, format="json")
    )
    return flow, enrolled["executions"][0]["id"]


def _real_ids(world: FuzzWorld, method: str, path: str, name: str) -> list[str]:
    destructive = (method.upper() == "DELETE" and path.endswith("/{id}")) or path.endswith(("/cancel", "/deactivate"))
    ids = world.expendable if destructive else world.ids
    if name == "id":
        resource = path.split("/api/v1/mkt-x/", 1)[-1].split("/", 1)[0]
        return ids.get(resource, [])
    return ids.get(name, [])


def served_schema(config: Any = None) -> Any:
    """The OpenAPI schema as the service serves it, through the real WSGI application."""
    from mktx.wsgi import application

    return schemathesis.openapi.from_wsgi(SCHEMA_URL, application, config=config)


def wsgi_call(method: str, url: str, user: Any, json: Any = None) -> Any:
    """A call through the real WSGI application as `user`, answering the werkzeug response schemathesis validates."""
    from werkzeug.test import Client

    from mktx.wsgi import application

    headers = {"Authorization": f"Bearer {access_token(user)}"}
    return Client(application).open(url, method=method, headers=headers, json=json)


def wsgi_get(url: str, user: Any) -> Any:
    return wsgi_call("GET", url, user)


def wsgi_post(url: str, body: dict[str, Any]) -> Any:
    """An anonymous JSON POST through the real WSGI application (login, refresh)."""
    from werkzeug.test import Client

    from mktx.wsgi import application

    return Client(application).post(url, json=body)


@contextmanager
def connection_kept() -> Iterator[None]:
    """As Django's own test client does: the end of a request through the real WSGI application must not close
    the connection that holds the test's transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


def fuzz_schema_for(world: FuzzWorld) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # generation speed is not what this tests, and six test runs share two cores in CI
            "suppress-health-check": ["too_slow"],
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "auth": {"openapi": {"bearerAuth": {"bearer": world.token}}},
        }
    )
    schema = served_schema(config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Each path parameter is one of the world's real values or what schemathesis generated, so that the
        operations on one thing are fuzzed past their 404."""
        if not path_parameters:
            return st.just(path_parameters)
        path = context.operation.path
        return st.fixed_dictionaries(
            {
                name: _real_or(value, _real_ids(world, context.operation.method, path, name))
                for name, value in path_parameters.items()
            }
        )

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """The same for the ids a body refers to (a campaign's template and segments, a test send's contacts...)."""
        if not isinstance(body, dict) or not any(key in BODY_IDS for key in body):
            return st.just(body)
        return st.fixed_dictionaries(
            {
                key: _real_or(value, world.body_values(key)) if key in BODY_IDS else st.just(value)
                for key, value in body.items()
            }
        )

    @schema.hook
    def flatmap_case(context: Any, case: Any) -> Any:
        """A delivery is signed as X signs it, or keeps the signature the fuzzer made up: both the processing of
        whatever a signed body holds and the refusal of a forged one are fuzzed."""
        if (case.method.upper(), case.path) != ("POST", WEBHOOK_URL) or not _is_json(case.body):
            return st.just(case)
        return st.sampled_from([signed_as_x(case), case])

    return schema


def _is_json(body: Any) -> bool:
    return body is None or isinstance(body, (dict, list, str, int, float, bool))


def signed_as_x(case: Any) -> Any:
    """The case with its body as raw bytes and X's signature of exactly those bytes."""
    raw = json.dumps(case.body).encode()
    headers = CaseInsensitiveDict(case.headers)
    headers[SIGNATURE_HEADER] = sign(django_settings.X_CONSUMER_SECRET, raw)
    signed = case.derive(headers=headers)
    signed.body = raw
    return signed


def _real_or(generated: Any, real: list[Any]) -> Any:
    # Real values first: Hypothesis leans to the first choices, and the generated one is still tried.
    return st.sampled_from([*real, generated]) if real else st.just(generated)


# Bounded like the per-operation run: a few scenarios of a few steps each, the same every run.
STATEFUL_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=8,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)


def stateful_workflow(world: FuzzWorld, checks: list[Any]) -> Any:
    """The state machine schemathesis builds from the links between operations, calling as the world's owner."""
    machine = fuzz_schema_for(world).as_state_machine()

    class Workflow(machine):  # type: ignore[misc, valid-type]
        """Each scenario starts from the same world: its writes are rolled back when it ends, or Hypothesis would
        see the same choices lead elsewhere on a replay (and the later scenarios would find the world deleted)."""

        def setup(self) -> None:
            self.scenario = transaction.atomic()
            self.scenario.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self.scenario.__exit__(None, None, None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": world.headers}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks, transport_kwargs=kwargs)

    return Workflow
