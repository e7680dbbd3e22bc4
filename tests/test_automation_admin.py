"""The automation back office (issue 13 item 9): flows with their graph as text and their executions counted by
status, activated, deactivated and deleted through the services; executions read-only, cancelled through the
engine."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from automation.admin import graph_text
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, Step, StepStatus, WaitKind
from contacts.models import Contact
from tests.factories import AccountFactory, ContactFactory, MerchantFactory
from tests.flow_helpers import active_flow, node

pytestmark = pytest.mark.django_db

FLOWS = "/admin/automation/flow/"
EXECUTIONS = "/admin/automation/execution/"


@pytest.fixture
def account(merchant):
    return AccountFactory.create(merchant=merchant)


def _contact(account: Any, username: str = "jane_doe") -> Contact:
    return ContactFactory.create(account=account, merchant=account.merchant, username=username)


def _branching_flow(merchant: Any, name: str = "VIP check") -> Flow:
    nodes = [
        node("node-1", "send_message", content="Hi {{firstName}}, thanks for writing to us today!"),
        node("c", "condition", conditions=[{"field": "tags", "operator": "contains", "value": "vip"}]),
        node("a", "add_tag", tags=["went-true"]),
        node("b", "end"),
    ]
    connections = [
        {"fromNodeId": "node-1", "toNodeId": "c"},
        {"fromNodeId": "c", "toNodeId": "a", "branch": "true"},
        {"fromNodeId": "c", "toNodeId": "b", "branch": "false"},
    ]
    return active_flow(merchant, "manual", nodes, connections, name=name)


def _execution(flow: Flow, contact: Contact, status: str = ExecutionStatus.RUNNING, **fields: Any) -> Execution:
    now = timezone.now()
    done = None if status == ExecutionStatus.RUNNING else now
    execution = Execution.objects.create(
        merchant_id=flow.merchant_id,
        flow=flow,
        version=flow.versions.get(number=flow.version),
        contact=contact,
        status=status,
        current_node_id="c" if status == ExecutionStatus.RUNNING else "",
        started_at=now,
        completed_at=done,
        **fields,
    )
    Step.objects.create(execution=execution, node_id="node-1", type="send_message", status="completed", started_at=now)
    return execution


def _action(staff: Client, url: str, action: str, *pks: Any):
    return staff.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- pages ----------------------------------------------------------------------------------------------------------


def test_the_flow_and_execution_pages_render_for_staff(staff, merchant, account):
    # given
    flow = _branching_flow(merchant)
    running = _execution(flow, _contact(account), due_at=timezone.now(), waiting_for=WaitKind.TIME)
    _execution(flow, _contact(account, "bob"), ExecutionStatus.COMPLETED)
    # then
    for url in (
        FLOWS,
        f"{FLOWS}{flow.pk}/change/",
        EXECUTIONS,
        f"{EXECUTIONS}{running.pk}/change/",
        f"{EXECUTIONS}?flow__id__exact={flow.pk}&status__exact=running",
        f"{EXECUTIONS}?contact={running.contact_id}",
        f"{EXECUTIONS}?q=jane",
        f"{EXECUTIONS}?q={running.pk}",
        f"{FLOWS}?q=VIP&deleted=no",
        "/admin/automation/resumerlane/",
    ):
        response = staff.get(url)
        assert response.status_code == 200, url
    page = staff.get(f"{EXECUTIONS}{running.pk}/change/").content.decode()
    assert "send_message" in page  # its steps inline
    assert staff.get(f"{EXECUTIONS}?q={running.pk}").context["cl"].result_count == 1
    assert staff.get(f"{EXECUTIONS}?q=@jane_doe").context["cl"].result_count == 1
    assert staff.get(f"{EXECUTIONS}?contact={running.contact_id}").context["cl"].result_count == 1


def test_the_flow_list_shows_the_counts_per_status(staff, merchant, account):
    flow = _branching_flow(merchant)
    _execution(flow, _contact(account, "a"))
    for i, status in enumerate(["completed", "completed", "failed", "cancelled", "cancelled", "cancelled"]):
        _execution(flow, _contact(account, f"c{i}"), status)
    # when
    response = staff.get(FLOWS)
    # then
    row = response.context["cl"].result_list[0]
    assert (row._running, row._completed, row._failed, row._cancelled) == (1, 2, 1, 3)
    assert f"?flow__id__exact={flow.pk}&amp;status__exact=cancelled" in response.content.decode()


def test_the_flow_list_costs_the_same_queries_for_one_or_five_flows(staff, merchant, account, count_queries):
    def listed() -> int:
        staff.get(FLOWS)  # the session and the user are cached after the first request
        with count_queries() as counted:
            assert staff.get(FLOWS).status_code == 200
        return counted["n"]

    flow = _branching_flow(merchant, "one")
    _execution(flow, _contact(account, "first"))
    one = listed()
    for i in range(4):
        more = _branching_flow(MerchantFactory.create(), f"flow {i}")
        _execution(more, _contact(AccountFactory.create(merchant=more.merchant), f"p{i}"), ExecutionStatus.COMPLETED)
    assert listed() == one, one


def test_the_graph_reads_as_text_with_the_entry_and_the_branches(staff, merchant):
    # given
    flow = _branching_flow(merchant)
    # when
    page = html.unescape(staff.get(f"{FLOWS}{flow.pk}/change/").content.decode())
    # then
    assert '> node-1 send_message (content: "Hi {{firstName}}, thanks fo...", delay: 0)  -> c' in page
    assert "  c condition (conditions: " in page
    assert "true -> a | false -> b" in page
    assert '  a add_tag (tags: ["went-true"])  -> (end)' in page
    assert "  b end</pre>" in page
    assert "trigger: manual" in page


def test_the_graph_escapes_what_the_merchant_wrote(staff, merchant):
    flow = active_flow(merchant, "manual", [node("n", "send_message", content="<script>alert(1)</script>")])
    page = staff.get(f"{FLOWS}{flow.pk}/change/").content.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page


def test_the_graph_text_of_a_split_and_a_missing_branch():
    text = graph_text(
        trigger_type="manual",
        trigger_config={},
        nodes=[node("s", "split", weights={"x": 1, "y": 2}), node("x", "end"), node("w", "wait_for_reply")],
        connections=[
            {"fromNodeId": "s", "toNodeId": "x", "branch": "x"},
            {"fromNodeId": "s", "toNodeId": "w", "branch": "y"},
        ],
    )
    assert '> s split (weights: {"x": 1, "y": 2})  x -> x | y -> w' in text
    assert "  w wait_for_reply  replied -> (end) | timeout -> (end)" in text


def test_the_graph_of_a_broken_definition_does_not_fail():
    text = graph_text(trigger_type="manual", trigger_config=None, nodes=[{"id": "a"}, "junk"], connections=[{"x": 1}])
    assert "> a None  -> (end)" in text


# --- flow actions ---------------------------------------------------------------------------------------------------


def test_activate_and_deactivate_go_through_the_services(staff, merchant, account):
    # given: an active flow with a running execution
    flow = _branching_flow(merchant)
    running = _execution(flow, _contact(account))
    # when
    response = _action(staff, FLOWS, "deactivate_flows", flow.pk)
    # then: inactive, and its running execution cancelled as flow_deactivate does
    assert response.status_code == 200
    flow.refresh_from_db()
    running.refresh_from_db()
    assert flow.status == FlowStatus.INACTIVE
    assert running.status == ExecutionStatus.CANCELLED and running.error == "flow_deactivated"
    assert _messages(response) == ["VIP check: inactive, its running executions cancelled"]
    # when activated again: a new version
    response = _action(staff, FLOWS, "activate_flows", flow.pk)
    flow.refresh_from_db()
    assert flow.status == FlowStatus.ACTIVE and flow.version == 2
    assert flow.versions.count() == 2
    assert _messages(response) == ["VIP check: active, version 2"]


def test_a_refusal_is_shown_as_the_services_message_not_a_500(staff, merchant):
    # given: a draft (deactivating it is refused) and a good flow
    draft = Flow.objects.create(merchant=merchant, name="Draft", trigger_type="manual", nodes=[node("a", "end")])
    good = _branching_flow(merchant, "Good")
    # when
    response = _action(staff, FLOWS, "deactivate_flows", draft.pk, good.pk)
    # then: each flow's outcome
    assert response.status_code == 200
    shown = _messages(response)
    assert any(text.startswith("Draft: ") and "draft" in text.lower() for text in shown)
    assert "Good: inactive, its running executions cancelled" in shown
    draft.refresh_from_db()
    assert draft.status == FlowStatus.DRAFT


def test_delete_goes_through_flow_delete_and_keeps_the_executions(staff, merchant, account):
    flow = _branching_flow(merchant)
    running = _execution(flow, _contact(account))
    # the admin's own delete is not offered
    assert staff.post(f"{FLOWS}{flow.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "delete_selected" not in staff.get(FLOWS).context["action_form"].fields["action"].choices.__repr__()
    # when
    response = _action(staff, FLOWS, "delete_flows", flow.pk)
    # then
    assert response.status_code == 200
    flow.refresh_from_db()
    running.refresh_from_db()
    assert flow.deleted_at is not None
    assert running.status == ExecutionStatus.CANCELLED and running.error == "flow_deleted"
    assert staff.get(f"{FLOWS}?deleted=yes").context["cl"].result_count == 1
    # deleting it again is the service's refusal
    assert _messages(_action(staff, FLOWS, "delete_flows", flow.pk)) == ["VIP check: Flow not found"]


def test_a_flow_cannot_be_edited_or_added_in_the_admin(staff, merchant):
    flow = _branching_flow(merchant)
    response = staff.post(f"{FLOWS}{flow.pk}/change/", {"name": "Renamed", "status": "draft"})
    assert response.status_code == 403
    assert staff.get(f"{FLOWS}add/").status_code == 403
    flow.refresh_from_db()
    assert flow.name == "VIP check" and flow.status == FlowStatus.ACTIVE


# --- executions -----------------------------------------------------------------------------------------------------


def test_the_cancel_action_cancels_the_running_selected_executions(staff, merchant, account):
    flow = _branching_flow(merchant)
    chosen = _execution(flow, _contact(account, "a"), due_at=timezone.now(), waiting_for=WaitKind.TIME)
    Step.objects.create(
        execution=chosen, node_id="c", type="wait", status=StepStatus.WAITING, started_at=timezone.now()
    )
    other = _execution(flow, _contact(account, "b"))
    done = _execution(flow, _contact(account, "c"), ExecutionStatus.COMPLETED)
    # when
    response = _action(staff, EXECUTIONS, "cancel_executions", chosen.pk, done.pk)
    # then
    assert response.status_code == 200
    assert _messages(response) == ["Cancelled 1 running execution(s)."]
    for execution in (chosen, other, done):
        execution.refresh_from_db()
    assert chosen.status == ExecutionStatus.CANCELLED and chosen.error == "cancelled_by_staff"
    assert chosen.due_at is None
    assert chosen.steps.get(node_id="c").status == StepStatus.CANCELLED
    assert other.status == ExecutionStatus.RUNNING
    assert done.status == ExecutionStatus.COMPLETED


def test_an_execution_cannot_be_changed_added_or_deleted(staff, merchant, account):
    flow = _branching_flow(merchant)
    execution = _execution(flow, _contact(account))
    assert staff.post(f"{EXECUTIONS}{execution.pk}/change/", {"status": "completed"}).status_code == 403
    assert staff.post(f"{EXECUTIONS}{execution.pk}/delete/", {"post": "yes"}).status_code == 403
    assert staff.get(f"{EXECUTIONS}add/").status_code == 403
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING


def test_staff_without_the_change_permission_get_no_actions(merchant, account):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    viewer = UserFactory.create(merchant=merchant, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_flow", "view_execution"]))
    client = Client()
    client.force_login(viewer)
    flow = _branching_flow(merchant)
    execution = _execution(flow, _contact(account))
    assert client.get(FLOWS).context["action_form"] is None
    _action(client, FLOWS, "deactivate_flows", flow.pk)
    _action(client, EXECUTIONS, "cancel_executions", execution.pk)
    flow.refresh_from_db()
    execution.refresh_from_db()
    assert flow.status == FlowStatus.ACTIVE and execution.status == ExecutionStatus.RUNNING
