"""Shared set-up of the flow definition tests: nodes, connections and flows written short, and the refusals."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from automation.validation import FlowDefinition, flow_definition_clean
from mktx.api.errors import InvalidInput
from mktx.iam.models import Merchant

VIP = [{"field": "tags", "operator": "contains", "value": "vip"}]
NOBODY = "00000000-0000-0000-0000-000000000001"  # no row has this id
MESSAGE = "message_received"


def node(node_id: str, kind: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "config": config}


def plain(node_id: str) -> dict[str, Any]:
    return node(node_id, "close_conversation")


def end(node_id: str) -> dict[str, Any]:
    return node(node_id, "end")


def condition(node_id: str) -> dict[str, Any]:
    return node(node_id, "condition", conditions=VIP)


def link(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    return {"fromNodeId": source, "toNodeId": target} | ({"branch": branch} if branch is not None else {})


def links(spec: str) -> list[dict[str, Any]]:
    """`"a>b a>c:false"`: a to b, and a to c by its `false` branch."""
    return [link(*part.replace(":", ">").split(">")) for part in spec.split()]


def flow(*nodes: dict[str, Any], connections: str | list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A manual flow of `nodes`, chained in order unless `connections` are given."""
    chain = [link(a["id"], b["id"]) for a, b in itertools.pairwise(nodes)]
    joined = chain if connections is None else links(connections) if isinstance(connections, str) else connections
    trigger = {"type": "manual", "config": {}}
    return {"name": "Flow", "trigger": trigger, "nodes": list(nodes), "connections": joined} | extra


def clean(merchant: Merchant, data: Any, base: FlowDefinition | None = None) -> FlowDefinition:
    return flow_definition_clean(merchant_id=merchant.id, data=data, base=base)


def refusal(merchant: Merchant, data: Any, base: FlowDefinition | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        clean(merchant, data, base)
    return refused.value


def refused_at(merchant: Merchant, data: Any, base: FlowDefinition | None = None) -> str:
    return str(refusal(merchant, data, base).details["field"])
