"""Shared set-up of the flows API tests: a flow's body, made and activated through the API, executions made as rows."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from automation.models import Execution, Flow, FlowVersion
from tests.factories import AccountFactory, ContactFactory

FLOWS = "/api/v1/mkt-x/automation/flows"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Welcome Flow",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {"id": "node-1", "type": "send_message", "config": {"content": "Hi {{name|friend}}"}},
            {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
            {"id": "node-3", "type": "end", "config": {}},
        ],
        "connections": [
            {"fromNodeId": "node-1", "toNodeId": "node-2"},
            {"fromNodeId": "node-2", "toNodeId": "node-3"},
        ],
        **overrides,
    }


def create(api: Any, **overrides: Any) -> dict[str, Any]:
    response = api.post(FLOWS, body(**overrides), format="json")
    assert response.status_code == 200, response.json()
    return dict(response.json()["data"])


def post(api: Any, flow_id: Any, verb: str, payload: Any = None) -> Any:
    return api.post(f"{FLOWS}/{flow_id}/{verb}", payload, format="json")


def activated(api: Any, **overrides: Any) -> Flow:
    flow_id = create(api, **overrides)["id"]
    assert post(api, flow_id, "activate").status_code == 200
    return Flow.objects.get(pk=flow_id)


def contact_of(merchant: Any) -> Any:
    return ContactFactory.create(account=AccountFactory.create(merchant=merchant), merchant=merchant)


def execution(flow: Flow, contact: Any, *, version: int | None = None, **fields: Any) -> Execution:
    number = version or flow.version
    flow_version = FlowVersion.objects.get_or_create(flow=flow, number=number, defaults={"trigger_type": "manual"})[0]
    fields.setdefault("started_at", timezone.now())
    return Execution.objects.create(
        merchant_id=flow.merchant_id, flow=flow, version=flow_version, contact=contact, **fields
    )


def error_field(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.json()
    assert response.json()["success"] is False
    return str(response.json()["details"].get("field"))
