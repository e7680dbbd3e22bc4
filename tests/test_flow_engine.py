"""The flow engine against the X sandbox over real HTTP, with the clock moved: each node and branch, waits that
resume on time, a worker that stops between X's answer and the record, the lease takeover, X's refusals and
failures, versions, re-entry and the loop guards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from automation import engine
from automation.engine import execution_advance, executions_cancel
from automation.models import Execution, ExecutionStatus, FlowStatus, FlowVersion, Step
from automation.resumer import due_claim
from automation.triggers import contacts_enroll, follower_added, message_received
from campaigns.models import Template
from contacts.models import Contact, Message, MessageOrigin, MessageStatus
from contacts.services.contacts import contact_erase, contact_tags_add
from tests.flow_helpers import active_flow, chain, dms_to, inbound, node, only_execution, run_due, step_summary

pytestmark = pytest.mark.django_db


def welcome_nodes(wait_seconds: int = 10) -> list[dict[str, Any]]:
    return [
        node("node-1", "send_message", content="Hi {{firstName}}, thanks for following!"),
        node("node-2", "wait", duration=wait_seconds),
        node("node-3", "send_message", content="Here is 10% off: WELCOME10"),
    ]


def test_it_sends_the_welcome_dm_waits_and_sends_the_second_on_time(merchant, sandbox, shop, jane, clock):
    # given
    flow = active_flow(merchant, "new_follower", welcome_nodes())
    # when
    follower_added(contact=jane["contact"])
    run_due()
    # then: the first DM is at X, and the execution waits at the wait node until 10 s later
    assert dms_to(sandbox, shop, jane) == ["Hi Jane, thanks for following!"]
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.RUNNING and execution.current_node_id == "node-2"
    assert execution.due_at is not None
    assert 9 <= (execution.due_at - timezone.now()).total_seconds() <= 10
    run_due(clock, seconds=5)
    assert len(dms_to(sandbox, shop, jane)) == 1
    # when the wait is over
    run_due(clock, seconds=6)
    # then
    assert dms_to(sandbox, shop, jane) == ["Hi Jane, thanks for following!", "Here is 10% off: WELCOME10"]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.COMPLETED and execution.current_node_id == ""
    assert step_summary(execution) == [("node-1", "completed"), ("node-2", "completed"), ("node-3", "completed")]
    messages = Message.objects.filter(origin=MessageOrigin.FLOW, status=MessageStatus.SENT)
    assert messages.count() == 2


def test_a_template_node_fills_placeholders_from_the_contact_and_variables(merchant, sandbox, shop, jane):
    template = Template.objects.create(merchant=merchant, name="Welcome", content="Hi {{name}}, welcome to {{shop}}!")
    active_flow(merchant, "manual", [node("n1", "send_message", templateId=str(template.pk), variables={"shop": "GG"})])
    flow = active_flow(merchant, "manual", [node("n1", "send_message", templateId=str(template.pk))], name="Bare")
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    # `{{shop}}` has no value and no default: never sent raw
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.FAILED and execution.error == "placeholder_missing"
    assert dms_to(sandbox, shop, jane) == []


def test_an_opted_out_contact_has_its_send_skipped_and_the_flow_goes_on(merchant, sandbox, shop, jane):
    Contact.objects.filter(pk=jane["contact"].pk).update(opted_out=True)
    flow = active_flow(
        merchant, "manual", [node("s", "send_message", content="Promo"), node("t", "add_tag", tags=["seen"])]
    )
    contacts_enroll(flow=flow, contacts=[Contact.objects.get(pk=jane["contact"].pk)])
    run_due()
    execution = only_execution(flow)
    assert step_summary(execution) == [("s", "skipped"), ("t", "completed")]
    assert execution.steps.get(node_id="s").detail == {"reason": "opted_out"}
    assert execution.status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == []
    assert Contact.objects.get(pk=jane["contact"].pk).tag_names == ["seen"]


def test_a_worker_stopped_between_x_and_the_record_never_sends_twice(merchant, sandbox, shop, jane, clock, monkeypatch):
    # given a worker that dies right after X accepted the DM (before the step is recorded)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Only once")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    real_record = engine._record

    def die(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker killed")

    monkeypatch.setattr(engine, "_record", die)
    with pytest.raises(SystemExit):
        run_due()
    monkeypatch.setattr(engine, "_record", real_record)
    assert dms_to(sandbox, shop, jane) == ["Only once"]
    # when another worker takes the execution over once the lease has ended
    run_due(clock, seconds=5)
    assert only_execution(flow).status == ExecutionStatus.RUNNING  # still leased by the dead worker
    run_due(clock, seconds=engine.LEASE.total_seconds())
    # then it records the DM X already has, and sends nothing more
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == ["Only once"]
    message = Message.objects.get(origin=MessageOrigin.FLOW)
    assert execution.steps.get().detail["messageId"] == str(message.pk)


def test_a_killed_workers_claimed_executions_are_taken_over_after_the_lease(merchant, shop, jane, clock):
    flow = active_flow(merchant, "manual", [node("t", "add_tag", tags=["vip"])])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    claimed = due_claim(now=timezone.now(), holder="dead-worker")
    assert len(claimed) == 1
    run_due()  # leased: nobody else takes it
    assert only_execution(flow).status == ExecutionStatus.RUNNING
    run_due(clock, seconds=engine.LEASE.total_seconds() + 1)
    assert only_execution(flow).status == ExecutionStatus.COMPLETED
    # the dead worker, woken, finds it is no longer its own
    assert execution_advance(execution_id=claimed[0], holder="dead-worker") == "not leased"


def test_x_refusing_with_403_fails_the_execution_with_xs_reason(merchant, sandbox, shop, jane):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=403, times=1, code=226)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hi"), node("t", "add_tag", tags=["x"])])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error.startswith("x_forbidden")
    assert step_summary(execution) == [("s", "failed")]


def test_x_failing_with_5xx_is_retried_with_backoff_and_sent_once(merchant, sandbox, shop, jane, clock):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=2)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hello again")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.RUNNING and execution.state == {"attempt": 2}
    run_due(clock, seconds=6)
    run_due(clock, seconds=31)
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == ["Hello again"]
    assert execution.steps.get().detail["attempts"] == 3


def test_x_failing_every_try_fails_the_execution_after_three_retries(merchant, sandbox, shop, jane, clock):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=500, times=10)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hello")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    for seconds in (0, 6, 31, 121, 200):
        run_due(clock, seconds=seconds)
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.FAILED and execution.error.startswith("x_error")


def test_a_last_retry_answered_5xx_after_x_sent_the_dm_completes_the_step(merchant, sandbox, shop, jane, clock):
    # the campaigns' fault found by bench/chaos.py x-faults, in flows: the last retry's 503 came after X sent the DM
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=3)
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1, afterSend=True)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hello")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    for seconds in (0, 6, 31, 121, 200):
        run_due(clock, seconds=seconds)
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.COMPLETED, execution.error
    assert dms_to(sandbox, shop, jane) == ["Hello"]
    assert execution.steps.get().detail["attempts"] == 4


def test_xs_rate_limit_makes_the_execution_wait_not_fail(merchant, sandbox, shop, jane, clock):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=429, times=1)
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Soon")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.RUNNING
    assert execution.due_at is not None and execution.due_at > timezone.now()
    clock.move_to(execution.due_at + timedelta(seconds=1))
    run_due()
    assert only_execution(flow).status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == ["Soon"]


def test_an_execution_keeps_the_version_it_started_on(merchant, shop, jane, clock):
    flow = active_flow(merchant, "manual", [node("w", "wait", duration=60), node("t", "add_tag", tags=["v1"])])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    # the flow is edited and activated again as version 2
    v2_nodes = [node("w", "wait", duration=60), node("t", "add_tag", tags=["v2"])]
    FlowVersion.objects.create(flow=flow, number=2, trigger_type="manual", nodes=v2_nodes, connections=chain(*v2_nodes))
    flow.version, flow.nodes = 2, v2_nodes
    flow.save()
    run_due(clock, seconds=61)
    execution = only_execution(flow)
    assert execution.version.number == 1 and execution.status == ExecutionStatus.COMPLETED
    assert Contact.objects.get(pk=jane["contact"].pk).tag_names == ["v1"]


def test_reentry_never_lets_a_contact_through_once_and_after_completion_again(merchant, sandbox, shop, jane):
    once = active_flow(merchant, "message_received", [node("t", "add_tag", tags=["a"])], name="Once")
    again = active_flow(
        merchant, "message_received", [node("t", "add_tag", tags=["b"])], name="Again", reentry="after_completion"
    )
    for text in ("one", "two"):
        message_received(message=inbound(jane, text))
        run_due()
    assert Execution.objects.filter(flow=once).count() == 1
    assert Execution.objects.filter(flow=again, status=ExecutionStatus.COMPLETED).count() == 2


def test_a_contact_never_has_two_running_executions_of_one_flow(merchant, shop, jane):
    flow = active_flow(merchant, "manual", [node("w", "wait", duration=60)], reentry="after_completion")
    answers = contacts_enroll(flow=flow, contacts=[jane["contact"], jane["contact"]])
    assert isinstance(answers[0][1], Execution) and answers[1][1] == "running"
    assert Execution.objects.filter(flow=flow, status=ExecutionStatus.RUNNING).count() == 1


def test_flows_triggering_flows_stop_at_depth_three(merchant, shop, jane):
    # A: tagged "a" -> swaps it for "b"; B: tagged "b" -> swaps it for "a" (re-entry after completion: only the
    # depth guard stops the chain)
    swap = [node("add", "add_tag", tags=["b"]), node("rm", "remove_tag", tags=["a"])]
    back = [node("add", "add_tag", tags=["a"]), node("rm", "remove_tag", tags=["b"])]
    active_flow(merchant, "tag_added", swap, name="A", tag="a", reentry="after_completion")
    active_flow(merchant, "tag_added", back, name="B", tag="b", reentry="after_completion")
    contact_tags_add(contact=jane["contact"], tags=["a"])  # the contacts hook starts A
    run_due()
    executions = sorted(Execution.objects.values_list("depth", "flow__name", "status"))
    assert executions == [
        (1, "A", ExecutionStatus.COMPLETED),
        (2, "B", ExecutionStatus.COMPLETED),
        (3, "A", ExecutionStatus.COMPLETED),
        (4, "B", ExecutionStatus.FAILED),
    ]
    assert Execution.objects.get(depth=4).error == "trigger_depth"


def test_flow_dms_per_contact_are_capped_per_day(merchant, sandbox, shop, jane, settings):
    settings.MKTX_FLOW_SENDS_PER_CONTACT_DAY = 2
    nodes = [node(f"s{i}", "send_message", content=f"DM {i}") for i in range(3)]
    flow = active_flow(merchant, "manual", nodes)
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.FAILED and execution.error == "flow_sends_per_contact_day"
    assert dms_to(sandbox, shop, jane) == ["DM 0", "DM 1"]


def test_cancelling_stops_a_waiting_execution_and_its_step(merchant, shop, jane, clock):
    flow = active_flow(merchant, "manual", [node("w", "wait", duration=60), node("t", "add_tag", tags=["x"])])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    assert executions_cancel(flow_id=flow.pk, reason="flow_deactivated") == 1
    run_due(clock, seconds=61)
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.CANCELLED and execution.error == "flow_deactivated"
    assert step_summary(execution) == [("w", "cancelled")]
    assert Contact.objects.get(pk=jane["contact"].pk).tag_names == []


def test_erasing_a_contact_removes_its_executions(merchant, shop, jane):
    flow = active_flow(merchant, "manual", [node("w", "wait", duration=60)])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    contact_erase(contact=Contact.objects.get(pk=jane["contact"].pk))
    assert not Execution.objects.filter(flow=flow).exists() and not Step.objects.exists()


def test_enrolling_needs_an_active_manual_flow(merchant, shop, jane):
    from mktx.api.errors import InvalidInput

    flow = active_flow(merchant, "new_follower", [node("t", "add_tag", tags=["x"])])
    with pytest.raises(InvalidInput):
        contacts_enroll(flow=flow, contacts=[jane["contact"]])
    flow.status = FlowStatus.INACTIVE
    with pytest.raises(InvalidInput):
        contacts_enroll(flow=flow, contacts=[jane["contact"]])


def test_a_template_an_active_flow_sends_cannot_be_deleted_until_the_flow_is_deactivated(merchant, owner):
    from automation.flows import flow_deactivate
    from campaigns.templates import template_delete
    from mktx.api.errors import ResourceInUse

    template = Template.objects.create(merchant=merchant, name="Welcome", content="Hi!")
    flow = active_flow(merchant, "manual", [node("s", "send_message", templateId=str(template.pk))])
    with pytest.raises(ResourceInUse) as refused:
        template_delete(template=template)
    assert refused.value.details == {"flowIds": [str(flow.pk)]}
    assert Template.objects.filter(pk=template.pk).exists()
    flow_deactivate(flow=flow)
    template_delete(template=template)
    assert not Template.objects.filter(pk=template.pk).exists()


def test_a_full_daily_quota_makes_the_flow_wait_for_the_window_not_fail(merchant, sandbox, shop, jane, settings, clock):
    # 2 DMs a day, 1 of them kept for replies: a flow (a marketing sender) gets one
    settings.MKTX_X_DM_DAILY_LIMIT = 2
    flow = active_flow(
        merchant, "manual", [node("a", "send_message", content="One"), node("b", "send_message", content="Two")]
    )
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.RUNNING and execution.current_node_id == "b"
    assert execution.due_at is not None and execution.due_at > timezone.now() + timedelta(hours=23)
    assert execution.steps.get(node_id="b").detail["reason"] == "reply_reserve"
    clock.move_to(execution.due_at + timedelta(seconds=1))
    run_due()
    assert only_execution(flow).status == ExecutionStatus.COMPLETED
    assert dms_to(sandbox, shop, jane) == ["One", "Two"]
