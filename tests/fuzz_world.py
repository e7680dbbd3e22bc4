"""The world the schemathesis run fuzzes: a merchant with a connected account, contacts with tags and
conversations, a template, a segment and a campaign, all made through the real paths, and the schema loaded from
the service itself (the real WSGI application, middleware included) with that merchant's owner's token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import strategies as st
from rest_framework.test import APIClient

from mktx.iam.models import Role
from tests.campaign_helpers import connect, customer
from tests.factories import MerchantFactory, UserFactory, access_token

SCHEMA_URL = "/api/v1/mkt-x/schema/"
MAX_EXAMPLES = 25
# Fixed so that CI sees the same inputs on every run; change it to explore other corners locally.
SEED = 20261201


@dataclass
class FuzzWorld:
    token: str
    ids: dict[str, list[str]] = field(default_factory=dict)  # path parameter kind -> real values

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


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

    shop = connect(api, sandbox)
    people = [
        customer(sandbox, shop, "ann_buyer", "vip", city="Lisbon", purchaseCount=7),
        customer(sandbox, shop, "bob_buyer", "vip", "wholesale", city="Porto"),
        customer(sandbox, shop, "cid_buyer"),
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
    conversations = _data(api.get("/api/v1/mkt-x/conversations"))
    ids = {
        "accounts": [str(shop["account"].id)],
        "contacts": [str(person["contact"].id) for person in people],
        "conversations": [str(conversation["id"]) for conversation in conversations],
        "templates": [template["id"]],
        "segments": [segment["id"]],
        "campaigns": [campaign["id"]],
        "tag_name": ["vip", "wholesale"],
    }
    return FuzzWorld(token=token, ids=ids)


def _real_ids(world: FuzzWorld, path: str, name: str) -> list[str]:
    if name == "id":
        resource = path.split("/api/v1/mkt-x/", 1)[-1].split("/", 1)[0]
        return world.ids.get(resource, [])
    return world.ids.get(name, [])


def fuzz_schema_for(world: FuzzWorld) -> Any:
    from mktx.wsgi import application

    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "auth": {"openapi": {"bearerAuth": {"bearer": world.token}}},
        }
    )
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, application, config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Each path parameter is either what schemathesis generated or one of the world's real values, so the
        operations on one thing are fuzzed past their 404."""
        if not path_parameters:
            return st.just(path_parameters)
        path = context.operation.path
        choices = {
            name: st.sampled_from([value, *_real_ids(world, path, name)]) for name, value in path_parameters.items()
        }
        return st.fixed_dictionaries(choices)

    return schema
