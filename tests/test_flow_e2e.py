"""Flows end to end over real HTTP both ways: a merchant's client makes and activates flows through the API served
by a live server, the sandbox plays X and the customers (its webhook deliveries reach the service), and the
resumer runs with the clock moved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from automation.models import Execution
from tests.flow_helpers import run_due
from tests.live_helpers import api, texts

pytestmark = pytest.mark.django_db(transaction=True)


def make_active(service: str, owner: Any, body: dict[str, Any]) -> dict[str, Any]:
    created = api(service, owner, "POST", "/automation/flows", json=body)
    assert created.status_code == 200, created.text
    flow = created.json()["data"]
    assert flow["status"] == "draft"
    activated = api(service, owner, "POST", f"/automation/flows/{flow['id']}/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["data"]["status"] == "active" and activated.json()["data"]["version"] == 1
    return dict(activated.json()["data"])


WELCOME = {
    "name": "Welcome Flow",
    "trigger": {"type": "new_follower", "config": {}},
    "nodes": [
        {"id": "node-1", "type": "send_message", "config": {"content": "Hi {{firstName}}, welcome!", "delay": 0}},
        {"id": "node-2", "type": "wait", "config": {"duration": 10}},
        {"id": "node-3", "type": "send_message", "config": {"content": "Your code: WELCOME10", "delay": 0}},
    ],
    "connections": [{"fromNodeId": "node-1", "toNodeId": "node-2"}, {"fromNodeId": "node-2", "toNodeId": "node-3"}],
}


def test_a_new_follower_gets_the_welcome_dm_then_the_second_after_the_wait(service, sandbox, live_shop, owner):
    flow = make_active(service, owner, WELCOME)
    jane = sandbox.user("jane_doe", "Jane Doe")
    with time_machine.travel(timezone.now(), tick=True) as clock:
        # when Jane follows the shop at X: the follow event reaches the service's webhook
        sandbox.follow(jane["id"], live_shop["id"])
        # then the first DM is sent at once; the execution waits at node-2
        assert texts(sandbox, live_shop, jane) == ["Hi Jane, welcome!"]
        listed = api(service, owner, "GET", f"/automation/flows/{flow['id']}/executions").json()["data"]
        assert [(e["status"], e["currentNodeId"]) for e in listed] == [("running", "node-2")]
        assert listed[0]["waitingUntil"] is not None
        clock.shift(timedelta(seconds=11))
        run_due()
    assert texts(sandbox, live_shop, jane) == ["Hi Jane, welcome!", "Your code: WELCOME10"]
    execution = Execution.objects.get()
    detail = api(service, owner, "GET", f"/automation/flows/{flow['id']}/executions/{execution.pk}").json()["data"]
    assert detail["status"] == "completed"
    assert [(s["nodeId"], s["status"]) for s in detail["steps"]] == [
        ("node-1", "completed"),
        ("node-2", "completed"),
        ("node-3", "completed"),
    ]
    # a second follow event for the same follower (X's duplicate delivery, or unfollow and follow again) does not
    # send the welcome again: re-entry is `never`
    sandbox.unfollow(jane["id"], live_shop["id"])
    sandbox.follow(jane["id"], live_shop["id"])
    assert len(texts(sandbox, live_shop, jane)) == 2


def test_a_keyword_dm_gets_the_flows_answer_and_a_stop_cancels_the_wait(service, sandbox, live_shop, owner):
    make_active(
        service,
        owner,
        {
            "name": "Price",
            "trigger": {"type": "message_received", "config": {"keywords": ["price", "giá"], "match": "contains"}},
            "nodes": [
                {"id": "answer", "type": "send_message", "config": {"content": "Our prices: shop.example/prices"}},
                {"id": "later", "type": "wait", "config": {"duration": 3600}},
                {"id": "again", "type": "send_message", "config": {"content": "Still interested?"}},
            ],
            "connections": [
                {"fromNodeId": "answer", "toNodeId": "later"},
                {"fromNodeId": "later", "toNodeId": "again"},
            ],
        },
    )
    bob = sandbox.user("bob_buyer", "Bob Buyer")
    sandbox.dm(bob["id"], live_shop["id"], "hello there")  # no keyword: no flow
    assert texts(sandbox, live_shop, bob) == []
    sandbox.dm(bob["id"], live_shop["id"], "What is the PRICE of the red shoes?")
    assert texts(sandbox, live_shop, bob) == ["Our prices: shop.example/prices"]
    execution = Execution.objects.get()
    assert execution.status == "running" and execution.current_node_id == "later"
    # STOP is a consent word: it triggers nothing, is confirmed once, and cancels the waiting execution
    sandbox.dm(bob["id"], live_shop["id"], "STOP")
    # (waited for: on a loaded machine the sandbox's delivery can time out before the service has processed it)
    sandbox.wait_for(lambda: Execution.objects.filter(pk=execution.pk).exclude(status="running").exists())
    execution.refresh_from_db()
    assert execution.status == "cancelled" and execution.error == "opted_out"
    sent = texts(sandbox, live_shop, bob, at_least=2)
    assert len(sent) == 2 and "unsubscribed" in sent[1]
