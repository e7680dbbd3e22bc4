"""The flow engine where two things happen at once: a flow stopped as a trigger starts it, a reply that races the
timeout, chains of flows at different depths in one batch, a send whose first try is still in flight, X gone for
good after an unclear try, a node that fails in the middle of a batch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from automation import batch
from automation.models import Execution, ExecutionStatus, Flow
from automation.resumer import due_claim
from automation.runners import IN_FLIGHT
from automation.triggers import contacts_enroll, reply_take
from contacts.models import Contact, Message, MessageOrigin, MessageStatus
from contacts.services.contacts import contact_tags_add
from contacts.services.outbound import SendSkipped
from tests.campaign_helpers import customer
from tests.flow_helpers import active_flow, dms_to, inbound, node, only_execution, run_due, step_summary

pytestmark = pytest.mark.django_db


def test_an_execution_started_as_its_flow_was_deactivated_is_cancelled_before_it_sends(merchant, sandbox, shop, jane):
    # given executions started by a trigger whose transaction committed after the deactivation cancelled the rest
    at_tag = active_flow(merchant, "manual", [node("t", "add_tag", tags=["x"]), node("s", "send_message", content="A")])
    at_send = active_flow(merchant, "manual", [node("s", "send_message", content="B")], name="Send")
    contacts_enroll(flow=at_tag, contacts=[jane["contact"]])
    contacts_enroll(flow=at_send, contacts=[jane["contact"]])
    Flow.objects.filter(pk__in=[at_tag.pk, at_send.pk]).update(status="inactive")
    # when the resumer reaches them
    run_due()
    # then neither sends: one is cancelled in its batch, the other right before its call to X
    for flow in (at_tag, at_send):
        execution = only_execution(flow)
        assert (execution.status, execution.error) == (ExecutionStatus.CANCELLED, "flow_inactive")
    assert dms_to(sandbox, shop, jane) == []
    assert Contact.objects.get(pk=jane["contact"].pk).tag_names == []


def test_flows_reached_directly_and_through_a_chain_keep_their_own_depth_in_one_batch(merchant, sandbox, shop, clock):
    # P: a -> b; Q: b -> vip; X: vip -> wait -> gold; Y: gold -> done
    active_flow(merchant, "tag_added", [node("t", "add_tag", tags=["b"])], name="P", tag="a")
    active_flow(merchant, "tag_added", [node("t", "add_tag", tags=["vip"])], name="Q", tag="b")
    active_flow(
        merchant,
        "tag_added",
        [node("w", "wait", duration=10), node("t", "add_tag", tags=["gold"])],
        name="X",
        tag="vip",
    )
    y = active_flow(merchant, "tag_added", [node("t", "add_tag", tags=["done"])], name="Y", tag="gold")
    direct, chained = customer(sandbox, shop, "direct_fan"), customer(sandbox, shop, "chained_fan")
    contact_tags_add(contact=direct["contact"], tags=["vip"])  # X at depth 1
    contact_tags_add(contact=chained["contact"], tags=["a"])  # P 1, Q 2, X 3
    run_due()
    # when both X executions end their wait in the same claim
    run_due(clock, seconds=11)
    # then Y runs at depth 2 for the direct one, and is stopped at depth 4 for the chained one
    ys = {e.contact_id: e for e in Execution.objects.filter(flow=y)}
    assert (ys[direct["contact"].pk].depth, ys[direct["contact"].pk].status) == (2, ExecutionStatus.COMPLETED)
    assert (ys[chained["contact"].pk].depth, ys[chained["contact"].pk].error) == (4, "trigger_depth")


def test_a_reply_after_the_timeout_went_first_is_not_swallowed(merchant, shop, jane, clock):
    nodes = [node("w", "wait_for_reply", timeout=60), node("late", "add_tag", tags=["late"])]
    flow = active_flow(merchant, "manual", nodes, [{"fromNodeId": "w", "toNodeId": "late", "branch": "timeout"}])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    run_due(clock, seconds=61)  # the timeout resumed it first
    assert only_execution(flow).status == ExecutionStatus.COMPLETED
    # the DM that arrives now is nobody's reply: it goes on to the message_received flows and the away message
    assert reply_take(message=inbound(jane, "sorry, I was out")) is False


def test_a_send_whose_first_try_may_still_be_in_flight_is_not_sent_again(
    merchant, sandbox, shop, jane, clock, monkeypatch
):
    # given a worker that stored the pending DM and stopped before X answered (or is still waiting on X)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Only once")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])

    def stalls(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker stopped mid-send")

    monkeypatch.setattr("contacts.services.outbound.send_to_x", stalls)
    with pytest.raises(SystemExit):
        run_due()
    monkeypatch.undo()
    pending = Message.objects.get(origin=MessageOrigin.FLOW)
    assert pending.status == MessageStatus.PENDING
    # when another worker takes the execution over at once (its lease forced out)
    Execution.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    run_due()
    # then it waits until the first try can no longer be in flight, and does not send
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.RUNNING
    assert execution.due_at is not None and execution.due_at >= pending.created_at + IN_FLIGHT
    assert dms_to(sandbox, shop, jane) == []
    # once it cannot be in flight, X is asked: it does not have it, so it is sent once
    clock.move_to(execution.due_at + timedelta(seconds=1))
    run_due()
    assert only_execution(flow).status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == ["Only once"]


def test_an_unclear_send_of_an_account_that_is_gone_fails_instead_of_waiting_forever(
    merchant, sandbox, shop, jane, clock
):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hello")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    sandbox.revoke(shop["id"])  # the merchant's X account revokes the app: X answers 401 from now on
    due = only_execution(flow).due_at
    assert due is not None
    clock.move_to(due + IN_FLIGHT)
    run_due()
    execution = only_execution(flow)
    assert (execution.status, execution.error) == (ExecutionStatus.FAILED, "account_inactive")


def test_a_node_that_fails_in_a_batch_fails_its_group_and_the_rest_of_the_claim_goes_on(
    merchant, shop, jane, monkeypatch
):
    tagging = active_flow(merchant, "manual", [node("t", "add_tag", tags=["x"])], name="Tagging")
    plain = active_flow(merchant, "manual", [node("e", "end")], name="Plain")

    def broken(**kwargs: Any) -> Any:
        raise SendSkipped("simulated", reason="bug", field="x")

    monkeypatch.setattr(batch, "contacts_tags_add", broken)
    contacts_enroll(flow=tagging, contacts=[jane["contact"]])
    contacts_enroll(flow=plain, contacts=[jane["contact"]])
    run_due()
    assert only_execution(tagging).status == ExecutionStatus.FAILED
    assert only_execution(tagging).error.startswith("internal error")
    assert only_execution(plain).status == ExecutionStatus.COMPLETED
    assert step_summary(only_execution(plain)) == [("e", "completed")]


def test_a_database_error_in_a_batch_sends_its_group_on_one_by_one(merchant, shop, jane, monkeypatch):
    # a deadlock with an inbound DM's transaction (it locks the contact, then the execution) is passing: not a failure
    from django.db import OperationalError

    flow = active_flow(merchant, "manual", [node("t", "add_tag", tags=["x"])])

    def deadlocked(**kwargs: Any) -> Any:
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(batch, "contacts_tags_add", deadlocked)
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert step_summary(execution) == [("t", "completed")]
    assert Contact.objects.get(pk=jane["contact"].pk).tag_names == ["x"]


def test_executions_that_go_on_alone_are_advanced_once(merchant, sandbox, shop, clock, monkeypatch):
    calls: list[Any] = []
    real = batch.execution_advance

    def counted(**kwargs: Any) -> str:
        calls.append(kwargs["execution_id"])
        return real(**kwargs)

    monkeypatch.setattr(batch, "execution_advance", counted)
    flow = active_flow(
        merchant, "manual", [node("w", "wait", duration=1), node("a", "update_attributes", attributes={"x": 1})]
    )
    people = [customer(sandbox, shop, f"alone_fan_{i}")["contact"] for i in range(3)]
    contacts_enroll(flow=flow, contacts=people)
    run_due()
    calls.clear()  # entering the wait, in a batch; now the wait ends and each goes on alone to its action
    run_due(clock, seconds=2)
    assert sorted(map(str, calls)) == sorted(str(e.pk) for e in Execution.objects.filter(flow=flow))
    assert set(Execution.objects.filter(flow=flow).values_list("status", flat=True)) == {ExecutionStatus.COMPLETED}


def test_a_claim_whose_sends_outlast_their_budget_hands_the_rest_back_due_and_each_sends_once(
    merchant, sandbox, shop, clock, monkeypatch
):
    # found by bench/chaos.py: a claim of 200 sends on a loaded machine outlasted its lease, another loop took the
    # same executions again while the first still worked through them, and sends crawled at 3 a second
    monkeypatch.setattr(batch, "ALONE_BUDGET", 0.0)  # the budget is spent once the first has gone on
    flow = active_flow(merchant, "manual", [node("w", "wait", duration=1), node("s", "send_message", content="Hi")])
    people = [customer(sandbox, shop, f"budget_fan_{i}") for i in range(3)]
    contacts_enroll(flow=flow, contacts=[p["contact"] for p in people])
    run_due()
    clock.shift(timedelta(seconds=2))
    ids = list(Execution.objects.filter(flow=flow).values_list("pk", flat=True))
    holder = "budget-holder"
    claimed = due_claim(now=timezone.now(), holder=holder)
    assert sorted(claimed) == sorted(ids)
    results = batch.executions_advance_many(execution_ids=claimed, holder=holder)
    assert results["handed back"] == 2
    left = Execution.objects.filter(flow=flow, status=ExecutionStatus.RUNNING)
    assert left.count() == 2 and all(e.lease_holder == "" and e.lease_until is None for e in left)
    # due at once, for the next claim of any loop
    assert all(e.due_at is not None and e.due_at <= timezone.now() for e in left)
    run_due()
    assert set(Execution.objects.filter(flow=flow).values_list("status", flat=True)) == {ExecutionStatus.COMPLETED}
    assert [dms_to(sandbox, shop, p) for p in people] == [["Hi"], ["Hi"], ["Hi"]]
