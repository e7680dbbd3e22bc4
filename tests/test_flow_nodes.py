"""Each node type and branch of a flow, and the triggers, against the X sandbox over real HTTP with the clock moved:
condition, split, wait_for_reply (replied, timeout), a wait's window, the contact and conversation actions, ai_reply
with nothing to answer (its branches: tests/test_chatbot_bot.py); message_received keywords, account scope,
contact_created and campaign_replied."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from automation.models import Execution, ExecutionStatus, FlowVersion
from automation.triggers import contacts_enroll, follower_added, message_received, reply_take
from campaigns.models import Campaign
from contacts.models import Contact
from tests.campaign_helpers import FreshTokenClient, connect, customer
from tests.flow_helpers import active_flow, chain, dms_to, inbound, node, only_execution, run_due, step_summary

pytestmark = pytest.mark.django_db


def test_a_condition_takes_the_true_or_false_branch_by_the_segment_dsl(merchant, sandbox, shop, jane):
    bob = customer(sandbox, shop, "bob_vip", "vip")
    nodes = [
        node("c", "condition", conditions=[{"field": "tags", "operator": "contains", "value": "vip"}]),
        node("yes", "add_tag", tags=["went-true"]),
        node("no", "add_tag", tags=["went-false"]),
    ]
    connections = [
        {"fromNodeId": "c", "toNodeId": "yes", "branch": "true"},
        {"fromNodeId": "c", "toNodeId": "no", "branch": "false"},
    ]
    flow = active_flow(merchant, "manual", nodes, connections)
    contacts_enroll(flow=flow, contacts=[jane["contact"], bob["contact"]])
    run_due()
    assert "went-false" in Contact.objects.get(pk=jane["contact"].pk).tag_names
    assert "went-true" in Contact.objects.get(pk=bob["contact"].pk).tag_names
    for execution in Execution.objects.filter(flow=flow):
        assert execution.status == ExecutionStatus.COMPLETED
        assert execution.steps.get(node_id="c").detail["branch"] in {"true", "false"}


def test_a_split_is_sticky_per_contact_and_follows_its_weights(merchant, shop):
    from automation.runners import StepContext, split

    nodes = [node("s", "split", weights={"a": 70, "b": 30}), node("a", "end"), node("b", "end")]
    connections = [{"fromNodeId": "s", "toNodeId": k, "branch": k} for k in "ab"]
    flow = active_flow(merchant, "manual", nodes, connections)
    counts = {"a": 0, "b": 0}
    execution = Execution(flow=flow)
    for i in range(4000):
        contact = Contact(pk=f"00000000-0000-0000-0000-{i:012d}", merchant_id=merchant.pk)
        context = StepContext(execution, {}, {"weights": {"a": 70, "b": 30}}, contact, 1, False, timezone.now())
        branch = split(context).branch
        assert split(context).branch == branch  # sticky
        counts[str(branch)] += 1
    assert abs(counts["a"] / 4000 - 0.7) < 0.03


def test_wait_for_reply_resumes_on_a_matching_reply_and_keeps_the_dm_from_other_flows(merchant, sandbox, shop, jane):
    nodes = [
        node("ask", "send_message", content="Reply YES to get the code"),
        node("w", "wait_for_reply", timeout=3600, keywords=["yes"], match="exact"),
        node("code", "send_message", content="Your code: YES10"),
        node("late", "add_tag", tags=["no-answer"]),
    ]
    connections = [
        *chain(nodes[0], nodes[1]),
        {"fromNodeId": "w", "toNodeId": "code", "branch": "replied"},
        {"fromNodeId": "w", "toNodeId": "late", "branch": "timeout"},
    ]
    flow = active_flow(merchant, "manual", nodes, connections)
    other = active_flow(merchant, "message_received", [node("t", "add_tag", tags=["other"])], name="Other")
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    assert only_execution(flow).current_node_id == "w"
    # a reply that misses the keyword: still waiting, and the DM starts no message_received flow
    first = inbound(jane, "maybe later")
    assert reply_take(message=first) is True
    run_due()
    assert only_execution(flow).current_node_id == "w"
    assert not Execution.objects.filter(flow=other).exists()
    # the matching reply
    assert reply_take(message=inbound(jane, "  Yes ")) is True
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.steps.get(node_id="w").detail["branch"] == "replied"
    assert dms_to(sandbox, shop, jane)[-1] == "Your code: YES10"
    # nothing waits any more: the next DM triggers message_received flows again
    assert reply_take(message=inbound(jane, "thanks")) is False
    # the other flow starts (it only tags: it does not answer the DM, so the bot or the away message still may)
    assert message_received(message=inbound(jane, "thanks again")) is False
    assert Execution.objects.filter(flow=other).count() == 1


def test_wait_for_reply_takes_the_timeout_branch_when_the_time_is_up(merchant, shop, jane, clock):
    nodes = [node("w", "wait_for_reply", timeout=600), node("late", "add_tag", tags=["no-answer"])]
    flow = active_flow(merchant, "manual", nodes, [{"fromNodeId": "w", "toNodeId": "late", "branch": "timeout"}])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    run_due(clock, seconds=599)
    assert only_execution(flow).current_node_id == "w"
    run_due(clock, seconds=2)
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert step_summary(execution) == [("w", "completed"), ("late", "completed")]
    assert execution.steps.get(node_id="w").detail["branch"] == "timeout"


def test_a_wait_with_a_window_resumes_only_inside_it(merchant, shop, jane, clock):
    # 09:00 UTC on a monday; the window opens at 12:00 (the account has no business hours: UTC)
    nodes = [
        node("w", "wait", duration=60, window={"start": "12:00", "end": "13:00"}),
        node("t", "add_tag", tags=["x"]),
    ]
    flow = active_flow(merchant, "manual", nodes)
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    run_due(clock, seconds=120)
    execution = only_execution(flow)
    assert execution.current_node_id == "w"
    assert execution.due_at == datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    clock.move_to(datetime(2027, 3, 1, 12, 0, 1, tzinfo=UTC))
    run_due()
    assert only_execution(flow).status == ExecutionStatus.COMPLETED


def test_message_received_flows_match_their_keywords(merchant, shop, jane):
    price = active_flow(
        merchant, "message_received", [node("t", "add_tag", tags=["price"])], keywords=["giá", "price"], name="P"
    )
    regex = active_flow(
        merchant,
        "message_received",
        [node("t", "add_tag", tags=["order"])],
        name="R",
        keywords=[r"order\s*#?\d+"],
        match="regex",
    )
    answering = active_flow(
        merchant, "message_received", [node("s", "send_message", content="On its way!")], name="A", keywords=["ship"]
    )
    assert message_received(message=inbound(jane, "hello")) is False
    assert message_received(message=inbound(jane, "What is the PRICE?")) is False  # started; it only tags
    assert message_received(message=inbound(jane, "where is Order #123")) is False
    assert Execution.objects.filter(flow=price).count() == 1 and Execution.objects.filter(flow=regex).count() == 1
    assert message_received(message=inbound(jane, "when do you ship?")) is True  # a flow that sends answers it
    assert Execution.objects.filter(flow=answering).count() == 1


def test_a_flow_scoped_to_another_account_does_not_start(merchant, sandbox, shop, jane, owner):
    other_shop = connect(FreshTokenClient(owner), sandbox, "goodgo_outlet")
    flow = active_flow(merchant, "new_follower", [node("t", "add_tag", tags=["x"])])
    flow.account_ids = [str(other_shop["account"].pk)]
    flow.save()
    FlowVersion.objects.filter(flow=flow).update(account_ids=flow.account_ids)
    follower_added(contact=jane["contact"])
    assert not Execution.objects.filter(flow=flow).exists()


def test_ai_reply_without_an_open_conversation_is_skipped(merchant, shop, jane):
    jane["contact"].conversations.update(status="closed")
    flow = active_flow(merchant, "manual", [node("ai", "ai_reply")], connections=[])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert step_summary(execution) == [("ai", "skipped")]


def test_contact_actions_update_attributes_assign_and_close_the_conversation(
    merchant, owner, agent, sandbox, shop, jane
):
    nodes = [
        node("attrs", "update_attributes", attributes={"tier": "gold", "points": 10}),
        node("assign", "assign_conversation", userId=str(agent.pk)),
        node("close", "close_conversation", reason="handled by the welcome flow"),
    ]
    flow = active_flow(merchant, "manual", nodes)
    contact = jane["contact"]
    Contact.objects.filter(pk=contact.pk).update(attributes={"city": "Hanoi"})
    contacts_enroll(flow=flow, contacts=[Contact.objects.get(pk=contact.pk)])
    run_due()
    execution = only_execution(flow)
    assert step_summary(execution) == [("attrs", "completed"), ("assign", "completed"), ("close", "completed")]
    assert Contact.objects.get(pk=contact.pk).attributes == {"city": "Hanoi", "tier": "gold", "points": 10}
    conversation = contact.conversations.get()
    assert conversation.assigned_to_id == agent.pk
    assert conversation.status == "closed" and conversation.close_reason == "handled by the welcome flow"


def test_round_robin_assigns_to_the_staff_member_with_the_fewest_open_conversations(
    merchant, owner, agent, sandbox, shop
):
    flow = active_flow(merchant, "manual", [node("assign", "assign_conversation", strategy="round_robin")])
    people = [customer(sandbox, shop, f"rr_fan_{i}") for i in range(4)]
    contacts_enroll(flow=flow, contacts=[person["contact"] for person in people])
    run_due()
    assigned = [person["contact"].conversations.get().assigned_to_id for person in people]
    assert sorted(assigned.count(user.pk) for user in (owner, agent)) == [2, 2]


def test_actions_on_a_contact_with_no_open_conversation_are_skipped(merchant, shop, jane):
    jane["contact"].conversations.update(status="closed")
    flow = active_flow(merchant, "manual", [node("close", "close_conversation"), node("t", "add_tag", tags=["x"])])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert step_summary(execution) == [("close", "skipped"), ("t", "completed")]
    assert execution.steps.get(node_id="close").detail == {"reason": "no_open_conversation"}


def test_a_new_contact_starts_the_contact_created_flows(merchant, sandbox, shop):
    flow = active_flow(merchant, "contact_created", [node("t", "add_tag", tags=["new"])])
    newcomer = customer(sandbox, shop, "brand_new")  # made by the inbound path: the contacts hook tells the trigger
    customer(sandbox, shop, "brand_new")  # the same person again: not a new contact
    run_due()
    execution = only_execution(flow)
    assert execution.contact_id == newcomer["contact"].pk and execution.status == ExecutionStatus.COMPLETED


def test_campaign_replied_flows_start_for_their_campaign_or_any(merchant, shop, jane):
    from automation.triggers import campaign_replied

    one = str(uuid.uuid4())
    campaign = Campaign.objects.create(merchant=merchant, name="Spring")
    only_this = active_flow(
        merchant, "campaign_replied", [node("t", "add_tag", tags=["a"])], name="One", campaignId=str(campaign.pk)
    )
    any_campaign = active_flow(merchant, "campaign_replied", [node("t", "add_tag", tags=["b"])], name="Any")
    campaign_replied(contact=jane["contact"], campaign_id=one)
    assert not Execution.objects.filter(flow=only_this).exists()
    assert Execution.objects.filter(flow=any_campaign).count() == 1
    campaign_replied(contact=jane["contact"], campaign_id=campaign.pk)
    assert Execution.objects.filter(flow=only_this).count() == 1
