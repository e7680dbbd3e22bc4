"""Shared set-up of the flow tests: a flow made active through the services, and the resumer run with the clock
moved."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from automation.models import Execution, Flow, FlowStatus, FlowVersion
from automation.resumer import resumer_step
from automation.validation import flow_definition_clean
from contacts.models import Message, MessageOrigin, MessageStatus


def chain(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    """Connections from each node to the next, in order."""
    return [{"fromNodeId": a["id"], "toNodeId": b["id"]} for a, b in itertools.pairwise(nodes)]


def node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "config": config}


def active_flow(
    merchant: Any,
    trigger: str,
    nodes: list[dict[str, Any]],
    connections: list[dict[str, Any]] | None = None,
    *,
    name: str = "Flow",
    **trigger_config: Any,
) -> Flow:
    """A validated flow, active at version 1 (or the next version of a flow of that name already there)."""
    definition = flow_definition_clean(
        merchant_id=merchant.pk,
        data={
            "name": name,
            "trigger": {"type": trigger, "config": trigger_config},
            "nodes": nodes,
            "connections": chain(*nodes) if connections is None else connections,
        },
    )
    flow = Flow.objects.create(
        merchant=merchant,
        name=definition.name,
        status=FlowStatus.ACTIVE,
        trigger_type=definition.trigger_type,
        trigger_config=definition.trigger_config,
        nodes=definition.nodes,
        connections=definition.connections,
        account_ids=definition.account_ids,
        version=1,
    )
    FlowVersion.objects.create(
        flow=flow,
        number=1,
        trigger_type=flow.trigger_type,
        trigger_config=flow.trigger_config,
        nodes=flow.nodes,
        connections=flow.connections,
        account_ids=flow.account_ids,
    )
    return flow


def run_due(traveller: Any = None, *, seconds: float = 0, limit: int = 50) -> None:
    """Move the clock `seconds` on (when a traveller is given), then resume until nothing is due now."""
    if traveller is not None and seconds:
        traveller.shift(timedelta(seconds=seconds))
    for _ in range(limit):
        wake = resumer_step()
        if wake is None or wake > timezone.now():
            return
    raise AssertionError("executions kept being due")


def only_execution(flow: Flow) -> Execution:
    executions = list(Execution.objects.filter(flow=flow))
    assert len(executions) == 1, executions
    return executions[0]


def step_summary(execution: Execution) -> list[tuple[str, str]]:
    return [(s.node_id, s.status) for s in execution.steps.order_by("id")]


def dms_to(sandbox: Any, shop: dict[str, Any], person: dict[str, Any]) -> list[str]:
    return [dm["text"] for dm in sandbox.dms(senderId=shop["id"], recipientId=person["id"])]


_inbound_ids = iter(range(930_000_000_000_000_000, 940_000_000_000_000_000))


def inbound(person: dict[str, Any], text: str) -> Message:
    contact = person["contact"]
    conversation = contact.conversations.order_by("-last_message_at").first()
    return Message.objects.create(
        account_id=contact.account_id,
        conversation=conversation,
        direction="inbound",
        origin=MessageOrigin.CUSTOMER,
        content=text,
        twitter_message_id=str(next(_inbound_ids)),
        status=MessageStatus.RECEIVED,
        sent_at=timezone.now(),
    )
