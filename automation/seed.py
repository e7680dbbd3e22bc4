"""The demo merchant's flows (`seed_demo`): a welcome flow for new followers and a keyword flow, made and activated
through the flows services, once per merchant."""

from __future__ import annotations

from typing import Any

from automation.flows import flow_activate, flow_create
from automation.models import Flow
from automation.validation import flow_definition_clean
from mktx.iam.models import Merchant

DEMO_FLOWS: list[dict[str, Any]] = [
    {
        "name": "Welcome flow",
        "description": "A new follower gets a welcome DM, and a discount code a day later.",
        "trigger": {"type": "new_follower", "config": {}},
        "nodes": [
            {"id": "welcome", "type": "send_message", "config": {"content": "Hi {{firstName}}, thanks for following!"}},
            {"id": "day", "type": "wait", "config": {"duration": 86400}},
            {
                "id": "code",
                "type": "send_message",
                "config": {"content": "Here is 10% off your first order: WELCOME10"},
            },
            {"id": "tag", "type": "add_tag", "config": {"tags": ["welcomed"]}},
        ],
        "connections": [
            {"fromNodeId": "welcome", "toNodeId": "day"},
            {"fromNodeId": "day", "toNodeId": "code"},
            {"fromNodeId": "code", "toNodeId": "tag"},
        ],
    },
    {
        "name": "Price questions",
        "description": "A DM that asks for prices gets the price list.",
        "trigger": {
            "type": "message_received",
            "config": {"keywords": ["price", "giá"], "match": "contains", "reentry": "after_completion"},
        },
        "nodes": [
            {
                "id": "prices",
                "type": "send_message",
                "config": {"content": "Our prices: https://goodgo.example/prices"},
            },
            {"id": "tag", "type": "add_tag", "config": {"tags": ["asked-price"]}},
        ],
        "connections": [{"fromNodeId": "prices", "toNodeId": "tag"}],
    },
]


def demo_flows_seed(*, merchant: Merchant) -> int:
    """The demo flows the merchant does not have yet (by name), created and activated; how many were made."""
    made = 0
    for body in DEMO_FLOWS:
        if Flow.objects.filter(merchant=merchant, name=body["name"], deleted_at__isnull=True).exists():
            continue
        definition = flow_definition_clean(merchant_id=merchant.pk, data=body)
        flow_activate(flow=flow_create(merchant_id=merchant.pk, definition=definition))
        made += 1
    return made
