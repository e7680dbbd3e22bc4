"""A flow's definition checked on save (automation/validation.py): every rule refuses with the exact path the client
spelled, the reference's example is valid and comes back normalised, and keyword_match as the triggers use it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from automation.graph import entry_node, next_nodes
from automation.models import Flow
from automation.validation import (
    MAX_NODES,
    FlowDefinition,
    branches_of,
)
from campaigns.models import Campaign, Template
from mktx.api.errors import InvalidInput
from tests.factories import AccountFactory, MerchantFactory, UserFactory
from tests.flow_validation_helpers import (
    MESSAGE,
    NOBODY,
    VIP,
    clean,
    end,
    flow,
    node,
    plain,
    refusal,
    refused_at,
)


@pytest.fixture
def templates(merchant):
    return [Template.objects.create(merchant=merchant, name=f"Welcome {n}", content="Hello!") for n in (1, 2)]


def reference_example(templates: list[Template]) -> dict[str, Any]:
    """The request body of api-reference.md's "Create Automation Flow"."""
    return {
        "name": "Welcome Flow",
        "trigger": {"type": "new_follower", "config": {}},
        "nodes": [
            {"id": "node-1", "type": "send_message", "config": {"templateId": str(templates[0].pk), "delay": 0}},
            {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
            {"id": "node-3", "type": "send_message", "config": {"templateId": str(templates[1].pk), "delay": 0}},
        ],
        "connections": [{"fromNodeId": "node-1", "toNodeId": "node-2"}, {"fromNodeId": "node-2", "toNodeId": "node-3"}],
    }


def test_it_accepts_the_reference_example(merchant, templates):
    definition = clean(merchant, reference_example(templates))

    assert (definition.name, definition.description, definition.account_ids) == ("Welcome Flow", "", None)
    assert (definition.trigger_type, definition.trigger_config) == ("new_follower", {"reentry": "never"})
    assert [n["config"] for n in definition.nodes] == [
        {"templateId": str(templates[0].pk), "delay": 0},
        {"duration": 86400},
        {"templateId": str(templates[1].pk), "delay": 0},
    ]
    assert definition.connections == reference_example(templates)["connections"]
    assert entry_node(definition.nodes, definition.connections) == "node-1"
    following = next_nodes(definition.nodes, definition.connections)
    assert following == {"node-1": {None: "node-2"}, "node-2": {None: "node-3"}, "node-3": {}}


def test_it_refuses_a_template_of_another_merchant(merchant, templates):
    theirs = Template.objects.create(merchant=MerchantFactory.create(), name="Theirs", content="x")
    data = reference_example(templates)
    data["nodes"][0]["config"]["templateId"] = str(theirs.pk)
    assert refused_at(merchant, data) == "nodes[0].config.templateId"


def test_it_fills_defaults_and_normalises_configs(merchant):
    data = flow(
        node("send", "send_message", content="Hi {{name}}", variables={"name": "An"}),
        node("wait", "wait", until="2030-01-01T09:00:00", window={"start": "09:00", "end": "17:00"}),
        node("reply", "wait_for_reply", timeout=3600, keywords=[" yes "]),
        node("tag", "add_tag", tags=["VIP", "vip", " New "]),
        connections="send>wait wait>reply reply>tag:replied",
    )
    data["trigger"] = {"type": MESSAGE, "config": {"keywords": ["  price "], "reentry": "after_completion"}}
    data["nodes"][0]["name"] = "First DM"

    definition = clean(merchant, data)

    assert definition.trigger_config == {"reentry": "after_completion", "match": "contains", "keywords": ["price"]}
    send, wait, reply, tag = definition.nodes
    assert send["name"] == "First DM"
    assert send["config"] == {"content": "Hi {{name}}", "variables": {"name": "An"}, "delay": 0}
    assert wait["config"] == {"until": "2030-01-01T09:00:00+00:00", "window": {"start": "09:00", "end": "17:00"}}
    assert reply["config"] == {"timeout": 3600, "match": "contains", "keywords": ["yes"]}
    assert tag["config"] == {"tags": ["vip", "new"]}
    assert definition.connections[2] == {"fromNodeId": "reply", "toNodeId": "tag", "branch": "replied"}


def test_an_until_with_an_offset_is_kept_in_utc(merchant):
    definition = clean(merchant, flow(node("w", "wait", until="2030-01-01T09:00:00+07:00")))
    assert definition.nodes[0]["config"] == {"until": "2030-01-01T02:00:00+00:00"}


def test_a_clean_definition_cleans_to_itself(merchant, templates):
    once = clean(merchant, reference_example(templates) | {"trigger": {"type": "tag_added", "config": {"tag": "VIP"}}})
    assert clean(merchant, {}, base=once) == once


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"description": ["x"]}, "description"),
        ({"trigger": None}, "trigger"),
        ({"trigger": "manual"}, "trigger"),
        ({"trigger": {"type": "webhook", "config": {}}}, "trigger.type"),
        ({"trigger": {"type": ["manual"], "config": {}}}, "trigger.type"),
        ({"trigger": {"type": "manual", "config": []}}, "trigger.config"),
        ({"trigger": {"type": "manual", "config": {}, "when": 1}}, "trigger.when"),
        ({"nodes": None}, "nodes"),
        ({"nodes": []}, "nodes"),
        ({"nodes": {"a": 1}}, "nodes"),
        ({"connections": {"a": 1}}, "connections"),
        ({"accountIds": []}, "accountIds"),
        ({"accountIds": "all"}, "accountIds"),
        ({"accountIds": ["not-a-uuid"]}, "accountIds[0]"),
    ],
)
def test_it_refuses_a_bad_top_level_field(merchant, change, field):
    assert refused_at(merchant, flow(end("a")) | change) == field


def test_it_requires_name_trigger_and_nodes_on_create(merchant):
    for key in ("name", "trigger", "nodes"):
        assert refused_at(merchant, {k: v for k, v in flow(end("a")).items() if k != key}) == key


def test_it_refuses_a_body_that_is_not_an_object(merchant):
    assert refused_at(merchant, ["nodes"]) == "body"


def test_account_ids_are_the_merchants_own(merchant):
    mine, theirs = str(AccountFactory.create(merchant=merchant).pk), str(AccountFactory.create().pk)

    assert clean(merchant, flow(end("a"), accountIds=[mine, mine])).account_ids == [mine]
    assert refused_at(merchant, flow(end("a"), accountIds=[mine, theirs])) == "accountIds[1]"
    assert clean(merchant, flow(end("a"), accountIds=None)).account_ids is None


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        (MESSAGE, {"keywords": "price"}, "keywords"),
        (MESSAGE, {"keywords": ["price", ""]}, "keywords[1]"),
        (MESSAGE, {"keywords": ["price", 3]}, "keywords[1]"),
        (MESSAGE, {"keywords": ["a"] * 51}, "keywords"),
        (MESSAGE, {"match": "fuzzy"}, "match"),
        (MESSAGE, {"keywords": ["ok", "(unclosed"], "match": "regex"}, "keywords[1]"),
        (MESSAGE, {"keywords": ["a" * 201], "match": "regex"}, "keywords[0]"),
        (MESSAGE, {"keywords": ["(a+)+$"], "match": "regex"}, "keywords[0]"),
        (MESSAGE, {"keywords": ["(a|a)*"], "match": "regex"}, "keywords[0]"),
        ("tag_added", {}, "tag"),
        ("tag_added", {"tag": "not a tag!"}, "tag"),
        ("campaign_replied", {"campaignId": "x"}, "campaignId"),
        ("campaign_replied", {"campaignId": NOBODY}, "campaignId"),
        ("new_follower", {"reentry": "always"}, "reentry"),
        ("new_follower", {"keywords": ["hi"]}, "keywords"),
        ("manual", {"tag": "vip"}, "tag"),
    ],
)
def test_it_refuses_a_bad_trigger_config(merchant, kind, config, field):
    data = flow(end("a"), trigger={"type": kind, "config": config})
    assert refused_at(merchant, data) == f"trigger.config.{field}"


def test_a_tag_added_trigger_normalises_its_tag(merchant):
    definition = clean(merchant, flow(end("a"), trigger={"type": "tag_added", "config": {"tag": " VIP "}}))
    assert definition.trigger_config == {"reentry": "never", "tag": "vip"}


def test_a_campaign_replied_trigger_names_a_campaign_of_the_merchant(merchant):
    mine = str(Campaign.objects.create(merchant=merchant, name="Mine").pk)
    theirs = str(Campaign.objects.create(merchant=MerchantFactory.create(), name="Theirs").pk)

    definition = clean(merchant, flow(end("a"), trigger={"type": "campaign_replied", "config": {"campaignId": mine}}))
    assert definition.trigger_config == {"reentry": "never", "campaignId": mine}
    theirs_flow = flow(end("a"), trigger={"type": "campaign_replied", "config": {"campaignId": theirs}})
    assert refused_at(merchant, theirs_flow) == "trigger.config.campaignId"
    assert clean(merchant, flow(end("a"), trigger={"type": "campaign_replied"})).trigger_config == {"reentry": "never"}


def test_a_safe_regex_trigger_is_accepted(merchant):
    config = {"keywords": [r"^gi[aá]\b", r"(?:đơn|don) ?hàng"], "match": "regex"}
    assert clean(merchant, flow(end("a"), trigger={"type": MESSAGE, "config": config})).trigger_config == {
        "reentry": "never",
        **config,
    }


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        (["a"], "nodes[0]"),
        ([None], "nodes[0]"),
        ([{"type": "end", "config": {}}], "nodes[0].id"),
        ([{"id": 7, "type": "end", "config": {}}], "nodes[0].id"),
        ([{"id": "", "type": "end", "config": {}}], "nodes[0].id"),
        ([{"id": "x" * 101, "type": "end", "config": {}}], "nodes[0].id"),
        ([{"id": "a", "type": "end"}, {"id": "a", "type": "end"}], "nodes[1].id"),
        ([{"id": "a", "type": "webhook", "config": {}}], "nodes[0].type"),
        ([{"id": "a", "type": None, "config": {}}], "nodes[0].type"),
        ([{"id": "a", "type": "end", "config": "none"}], "nodes[0].config"),
        ([{"id": "a", "type": "end", "config": {}, "position": {"x": 1}}], "nodes[0].position"),
        ([{"id": "a", "type": "end", "config": {}, "name": "x" * 201}], "nodes[0].name"),
        ([{"id": "a", "type": "end", "config": {}, "name": 3}], "nodes[0].name"),
        ([{"id": "a", "type": "end", "config": {"reason": "done"}}], "nodes[0].config.reason"),
        ([{"id": "a", "type": "ai_reply", "config": {"model": "gpt"}}], "nodes[0].config.model"),
    ],
)
def test_it_refuses_a_bad_node(merchant, nodes, field):
    assert refused_at(merchant, {"name": "F", "trigger": {"type": "manual"}, "nodes": nodes}) == field


def test_it_refuses_more_than_100_nodes_and_accepts_100(merchant):
    refused = refusal(merchant, flow(*[plain(f"n{i}") for i in range(MAX_NODES + 1)]))
    assert (refused.details["field"], "at most 100" in refused.details["reason"]) == ("nodes", True)
    assert len(clean(merchant, flow(*[plain(f"n{i}") for i in range(MAX_NODES)])).nodes) == MAX_NODES


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("send_message", {}, "templateId"),
        ("send_message", {"content": "Hi", "templateId": NOBODY}, "content"),
        ("send_message", {"content": "   "}, "content"),
        ("send_message", {"content": "x" * 10_001}, "content"),
        ("send_message", {"content": ["Hi"]}, "content"),
        ("send_message", {"templateId": 12}, "templateId"),
        ("send_message", {"templateId": NOBODY}, "templateId"),
        ("send_message", {"content": "Hi", "delay": -1}, "delay"),
        ("send_message", {"content": "Hi", "delay": 31_536_001}, "delay"),
        ("send_message", {"content": "Hi", "delay": True}, "delay"),
        ("send_message", {"content": "Hi", "delay": 1.5}, "delay"),
        ("send_message", {"content": "Hi", "variables": ["a"]}, "variables"),
        ("send_message", {"content": "Hi", "variables": {"a": {"b": 1}}}, "variables.a"),
        ("send_message", {"content": "Hi", "buttons": []}, "buttons"),
        ("wait", {}, "duration"),
        ("wait", {"duration": 0}, "duration"),
        ("wait", {"duration": 31_536_001}, "duration"),
        ("wait", {"duration": "60"}, "duration"),
        ("wait", {"duration": 60, "until": "2030-01-01T00:00:00Z"}, "until"),
        ("wait", {"until": "tomorrow"}, "until"),
        ("wait", {"until": 1767225600}, "until"),
        ("wait", {"duration": 60, "window": {"start": "9am", "end": "17:00"}}, "window.start"),
        ("wait", {"duration": 60, "window": {"start": "17:00", "end": "09:00"}}, "window.end"),
        ("wait", {"duration": 60, "window": {"start": "09:00", "end": "17:00", "days": ["someday"]}}, "window.days[0]"),
        ("wait", {"duration": 60, "window": "always"}, "window"),
        ("condition", {}, "conditions"),
        ("condition", {"conditions": "vip"}, "conditions"),
        ("condition", {"conditions": [{"field": "tags", "operator": "above", "value": 1}]}, "conditions[0].operator"),
        ("condition", {"conditions": [*VIP, {"field": "size", "operator": "equals"}]}, "conditions[1].field"),
        ("wait_for_reply", {}, "timeout"),
        ("wait_for_reply", {"timeout": 0}, "timeout"),
        ("wait_for_reply", {"timeout": 60, "match": "glob"}, "match"),
        ("wait_for_reply", {"timeout": 60, "keywords": [""]}, "keywords[0]"),
        ("wait_for_reply", {"timeout": 60, "keywords": ["(x*)*"], "match": "regex"}, "keywords[0]"),
        ("add_tag", {}, "tags"),
        ("add_tag", {"tags": []}, "tags"),
        ("remove_tag", {"tags": ["ok", "not ok"]}, "tags[1]"),
        ("update_attributes", {}, "attributes"),
        ("update_attributes", {"attributes": []}, "attributes"),
        ("update_attributes", {"attributes": {"1st": "x"}}, "attributes.1st"),
        ("update_attributes", {"attributes": {"size": [1]}}, "attributes.size"),
        ("assign_conversation", {}, "userId"),
        ("assign_conversation", {"strategy": "random"}, "strategy"),
        ("assign_conversation", {"strategy": "round_robin", "userId": NOBODY}, "strategy"),
        ("assign_conversation", {"userId": NOBODY}, "userId"),
        ("close_conversation", {"reason": "x" * 201}, "reason"),
        ("close_conversation", {"reason": 5}, "reason"),
        ("split", {}, "weights"),
        ("split", {"weights": {"a": 1}}, "weights"),
        ("split", {"weights": [50, 50]}, "weights"),
        ("split", {"weights": {"a": 50, "b": 0}}, "weights.b"),
        ("split", {"weights": {"a": 50, "b": -1}}, "weights.b"),
        ("split", {"weights": {"a": 50, "b": True}}, "weights.b"),
        ("split", {"weights": {"a": 50, "b": "50"}}, "weights.b"),
        ("split", {"weights": {"a": 50, "": 50}}, "weights."),
        ("split", {"weights": {"a": 50, "b" * 51: 50}}, "weights." + "b" * 51),
    ],
)  # fmt: skip
def test_it_refuses_a_bad_node_config(merchant, kind, config, field):
    assert refused_at(merchant, flow(plain("first"), node("second", kind, **config))) == f"nodes[1].config.{field}"


def test_it_accepts_each_node_type(merchant):
    user = UserFactory.create(merchant=merchant)
    data = flow(
        node("send", "send_message", content="Hi", delay=30),
        node("wait", "wait", duration=60, window={"start": "09:00", "end": "17:00", "days": ["monday"]}),
        node("cond", "condition", conditions=VIP),
        node("reply", "wait_for_reply", timeout=60, keywords=["yes"], match="exact"),
        node("add", "add_tag", tags=["vip"]),
        node("remove", "remove_tag", tags=["lead"]),
        node("attrs", "update_attributes", attributes={"size": 42, "old": None}),
        node("assign", "assign_conversation", userId=str(user.pk)),
        node("robin", "assign_conversation", strategy="round_robin"),
        node("close", "close_conversation", reason="done"),
        node("split", "split", weights={"a": 70, "b": 30.5}),
        node("ai", "ai_reply"),
        end("end"),
        connections="send>wait wait>cond cond>reply:true cond>end:false reply>add:replied add>remove remove>attrs "
        "attrs>assign assign>robin robin>close close>split split>ai:a split>end:b ai>end:escalated",
    )
    definition = clean(merchant, data)
    by_id = {n["id"]: n for n in definition.nodes}
    assert by_id["assign"]["config"] == {"userId": str(user.pk)}
    assert by_id["wait"]["config"]["window"] == {"start": "09:00", "end": "17:00", "days": ["monday"]}
    assert (branches_of(by_id["split"]), branches_of(by_id["send"])) == ({"a", "b"}, None)
    assert next_nodes(definition.nodes, definition.connections)["cond"] == {"true": "reply", "false": "end"}


def test_it_refuses_a_user_of_another_merchant_or_an_inactive_one(merchant):
    for user in (UserFactory.create(), UserFactory.create(merchant=merchant, is_active=False)):
        assert (
            refused_at(merchant, flow(node("a", "assign_conversation", userId=str(user.pk))))
            == "nodes[0].config.userId"
        )


@pytest.mark.parametrize("junk", [None, 0, 1.5, True, "x", [], ["x"], {}, {"x": None}, [None], [{}]])
def test_a_value_of_the_wrong_type_anywhere_is_invalid_input(merchant, templates, junk):
    paths: list[tuple[Any, ...]] = [
        ("name",), ("description",), ("trigger",), ("trigger", "type"), ("trigger", "config"), ("nodes",),
        ("connections",), ("accountIds",), ("nodes", 0), ("nodes", 0, "id"), ("nodes", 0, "type"),
        ("nodes", 0, "config"), ("nodes", 0, "name"), ("nodes", 0, "config", "templateId"),
        ("nodes", 0, "config", "variables"), ("nodes", 1, "config", "duration"), ("nodes", 1, "config", "window"),
        ("connections", 0), ("connections", 0, "fromNodeId"), ("connections", 1, "toNodeId"),
        ("connections", 0, "branch"),
    ]  # fmt: skip
    for path in paths:
        data = reference_example(templates)
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = junk
        try:  # anything but InvalidInput fails the test
            clean(merchant, data)
        except InvalidInput as refused:
            assert refused.details["field"]


def test_an_update_keeps_what_it_does_not_give(merchant, templates):
    base = clean(merchant, reference_example(templates))
    updated = clean(merchant, {"name": "Renamed"}, base=base)
    assert updated == dataclasses.replace(base, name="Renamed")


def test_an_update_of_the_nodes_is_checked_against_the_kept_connections(merchant, templates):
    base = clean(merchant, reference_example(templates))
    assert refused_at(merchant, {"nodes": [end("other")]}, base=base) == "connections[0].fromNodeId"


def test_an_update_may_clear_the_accounts_and_set_a_description(merchant, templates):
    account = AccountFactory.create(merchant=merchant)
    base = clean(merchant, reference_example(templates) | {"accountIds": [str(account.pk)]})
    updated = clean(merchant, {"accountIds": None, "description": "Greets followers"}, base=base)
    assert (updated.account_ids, updated.description) == (None, "Greets followers")


def test_a_flow_definition_reads_a_stored_flow(merchant, templates):
    definition = clean(merchant, reference_example(templates))
    stored = Flow.objects.create(merchant=merchant, **dataclasses.asdict(definition))
    assert FlowDefinition.of(Flow.objects.get(pk=stored.pk)) == definition


@pytest.mark.parametrize("until", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_wait_until_out_of_range_is_refused(merchant, until):
    assert refused_at(merchant, flow(node("w", "wait", until=until))) == "nodes[0].config.until"


@pytest.mark.parametrize("pattern", [r"(?V1)[[a]--[b]]", r"(a)\1", r"(?R)", r"(?P<n>a)(?P>n)", r"\g<1>"])
def test_regex_keywords_with_version_flags_backreferences_or_recursion_are_refused(merchant, pattern):
    config = {"keywords": [pattern], "match": "regex"}
    data = flow(end("a"), trigger={"type": MESSAGE, "config": config})
    assert refused_at(merchant, data) == "trigger.config.keywords[0]"
