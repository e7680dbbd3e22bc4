"""A flow's graph checked on save (automation/graph.py): connections against each node's branches, one entry, every
node reached, no loop that could run without pausing."""

from __future__ import annotations

import pytest

from automation.graph import next_nodes
from tests.flow_validation_helpers import clean, condition, end, flow, link, links, node, plain, refusal, refused_at

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("nodes", "connections", "field"),
    [
        ([node("a", "ai_reply"), end("b")], ["a->b"], "connections[0]"),
        ([node("a", "ai_reply"), end("b")], [{"fromNodeId": "a"}], "connections[0].toNodeId"),
        ([node("a", "ai_reply"), end("b")], [{"fromNodeId": "a", "toNodeId": "c"}], "connections[0].toNodeId"),
        ([node("a", "ai_reply"), end("b")], [{"fromNodeId": 1, "toNodeId": "b"}], "connections[0].fromNodeId"),
        ([node("a", "ai_reply"), end("b")], [link("a", "b", "answered") | {"label": "x"}], "connections[0].label"),
        ([plain("a"), end("b")], "a>b:yes", "connections[0].branch"),
        ([plain("a"), end("b"), end("c")], "a>b a>c", "connections[1].fromNodeId"),
        ([plain("a"), end("b")], "a>b a>b", "connections[1]"),
        ([condition("a"), end("b"), end("c")], "a>b a>c:false", "connections[0].branch"),
        ([condition("a"), end("b"), end("c")], "a>b:yes a>c:false", "connections[0].branch"),
        ([condition("a"), end("b"), end("c")], "a>b:true a>c:true", "connections[1].branch"),
        ([condition("a"), end("b")], [link("a", "b") | {"branch": False}], "connections[0].branch"),
        ([condition("a"), end("b")], "a>b:true", "nodes[0]"),
        ([node("s", "split", weights={"x": 1, "y": 1, "z": 1}), end("b")], "s>b:x s>b:y", "nodes[0]"),
        ([node("s", "split", weights={"x": 1, "y": 1}), end("b")], "s>b:x s>b:w", "connections[1].branch"),
        ([node("r", "wait_for_reply", timeout=60), end("b")], "r>b:answered", "connections[0].branch"),
        ([end("a"), end("b")], "a>b", "connections[0].fromNodeId"),
    ],
)  # fmt: skip
def test_it_refuses_a_bad_connection(merchant, nodes, connections, field):
    assert refused_at(merchant, flow(*nodes, connections=connections)) == field


def test_a_split_connects_each_weight_key_and_may_share_a_target(merchant):
    definition = clean(
        merchant, flow(node("s", "split", weights={"x": 1, "y": 2}), end("b"), connections="s>b:x s>b:y")
    )
    assert next_nodes(definition.nodes, definition.connections)["s"] == {"x": "b", "y": "b"}


def test_wait_for_reply_and_ai_reply_may_leave_a_branch_unconnected(merchant):
    definition = clean(
        merchant, flow(node("r", "wait_for_reply", timeout=60), node("ai", "ai_reply"), connections="r>ai:replied")
    )
    assert next_nodes(definition.nodes, definition.connections) == {"r": {"replied": "ai"}, "ai": {}}


def test_a_null_branch_on_a_plain_node_is_no_branch(merchant):
    definition = clean(merchant, flow(plain("a"), end("b"), connections=[link("a", "b") | {"branch": None}]))
    assert definition.connections == [{"fromNodeId": "a", "toNodeId": "b"}]


def test_it_refuses_a_flow_without_an_entry(merchant):
    waits = (node("a", "wait", duration=60), node("b", "wait", duration=60))
    assert refused_at(merchant, flow(*waits, connections="a>b b>a")) == "nodes"


def test_it_refuses_several_entries_and_names_them(merchant):
    refused = refusal(merchant, flow(plain("a"), plain("b"), end("c"), connections="a>c b>c"))
    assert refused.details["field"] == "nodes"
    assert "'a', 'b'" in refused.details["reason"]


def test_it_refuses_an_unreachable_node(merchant):
    # a -> b -> c is the flow; w and e loop between themselves, each with an incoming connection, out of its reach
    data = flow(plain("a"), plain("b"), end("c"), node("w", "wait", duration=60), plain("e"), connections="a>b b>c")
    data["connections"] += links("w>e e>w")
    assert refused_at(merchant, data) == "nodes[3]"


def test_a_loop_through_a_wait_is_accepted(merchant):
    send, wait = node("send", "send_message", content="Still there?"), node("wait", "wait", duration=86400)
    definition = clean(merchant, flow(plain("start"), send, wait, connections="start>send send>wait wait>send"))
    assert next_nodes(definition.nodes, definition.connections)["wait"] == {None: "send"}


def test_a_loop_through_a_wait_for_reply_is_accepted(merchant):
    ask, reply = node("ask", "send_message", content="Reply yes"), node("reply", "wait_for_reply", timeout=3600)
    data = flow(plain("start"), ask, reply, end("done"), connections="start>ask ask>reply reply>done:replied")
    data["connections"] += links("reply>ask:timeout")
    assert len(clean(merchant, data).connections) == 4


def test_a_loop_without_a_wait_is_refused_naming_its_nodes(merchant):
    loop = "start>tag tag>check check>tag:false check>end:true"
    data = flow(plain("start"), node("tag", "add_tag", tags=["a"]), condition("check"), end("end"), connections=loop)
    refused = refusal(merchant, data)
    assert refused.details["field"] == "connections"
    assert "tag -> check -> tag" in refused.details["reason"]


def test_a_loop_whose_only_wait_is_until_a_moment_is_refused(merchant):
    # once the moment has passed, the wait no longer pauses and the loop would spin
    send, wait = node("send", "send_message", content="Hi"), node("wait", "wait", until="2030-01-01T00:00:00Z")
    data = flow(plain("start"), send, wait, connections="start>send send>wait wait>send")
    assert refused_at(merchant, data) == "connections"


def test_a_plain_node_connected_to_itself_is_refused(merchant):
    data = flow(plain("a"), node("b", "add_tag", tags=["x"]), connections="a>b b>b")
    assert refused_at(merchant, data) == "connections"
