"""The flows API's executions (list, filters, detail with steps) and enrolment of the merchant's contacts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import Execution, ExecutionStatus, Step, StepStatus
from tests.factories import AccountFactory, ContactFactory, MerchantFactory
from tests.flow_api_helpers import FLOWS, activated, contact_of, create, error_field, execution, post

pytestmark = pytest.mark.django_db


def test_the_executions_list_filters_pages_and_shows_waiting_runs_at_their_wait(api, merchant):
    flow = activated(api)
    ann, bob = contact_of(merchant), contact_of(merchant)
    now = timezone.now()
    due = now + timedelta(hours=3)
    old = execution(flow, ann, status=ExecutionStatus.FAILED, error="template_missing", current_node_id="node-1",
                    started_at=now - timedelta(days=2), completed_at=now - timedelta(days=2))  # fmt: skip
    done = execution(flow, ann, status=ExecutionStatus.COMPLETED, started_at=now - timedelta(days=1),
                     completed_at=now - timedelta(hours=20))  # fmt: skip
    waiting = execution(flow, bob, current_node_id="node-2", due_at=due, waiting_for="time", started_at=now)

    listed = api.get(f"{FLOWS}/{flow.pk}/executions").json()
    running = api.get(f"{FLOWS}/{flow.pk}/executions", {"status": "running"}).json()["data"]
    anns = api.get(f"{FLOWS}/{flow.pk}/executions", {"contactId": str(ann.id)}).json()["data"]
    second_page = api.get(f"{FLOWS}/{flow.pk}/executions", {"skip": 1, "take": 1}).json()

    assert [e["id"] for e in listed["data"]] == [str(waiting.pk), str(done.pk), str(old.pk)]
    assert listed["pagination"]["total"] == 3
    item = listed["data"][0]
    assert item == {
        "id": str(waiting.pk), "flowId": str(flow.pk), "flowVersion": 1, "contactId": str(bob.id),
        "status": "running", "currentNodeId": "node-2", "startedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "completedAt": None, "waitingUntil": due.strftime("%Y-%m-%dT%H:%M:%SZ"), "error": None,
    }  # fmt: skip
    failed = listed["data"][2]
    assert (failed["status"], failed["error"], failed["currentNodeId"], failed["waitingUntil"]) == (
        "failed", "template_missing", None, None,
    )  # fmt: skip
    assert [e["id"] for e in running] == [str(waiting.pk)]
    assert [e["id"] for e in anns] == [str(done.pk), str(old.pk)]
    assert [e["id"] for e in second_page["data"]] == [str(done.pk)]
    assert error_field(api.get(f"{FLOWS}/{flow.pk}/executions", {"status": "waiting"})) == "status"
    assert error_field(api.get(f"{FLOWS}/{flow.pk}/executions", {"contactId": "nope"})) == "contactId"


def test_an_execution_due_between_two_steps_is_running_but_not_waiting(api, merchant):
    flow = activated(api)
    between = execution(flow, contact_of(merchant), current_node_id="node-1", due_at=timezone.now(), waiting_for="")
    (item,) = api.get(f"{FLOWS}/{flow.pk}/executions").json()["data"]
    assert item["id"] == str(between.pk)
    assert (item["status"], item["currentNodeId"], item["waitingUntil"]) == ("running", "node-1", None)


def test_the_executions_list_runs_a_constant_number_of_queries(api, merchant, unthrottled, django_assert_num_queries):
    flow = activated(api)
    execution(flow, contact_of(merchant))
    url = f"{FLOWS}/{flow.pk}/executions"
    with django_assert_num_queries(4):  # the caller, the flow, the count, the page with its versions
        assert len(api.get(url).json()["data"]) == 1
    for _ in range(4):
        execution(flow, contact_of(merchant), status=ExecutionStatus.COMPLETED)

    with django_assert_num_queries(4):
        five = api.get(url).json()

    assert len(five["data"]) == 5
    assert {e["flowVersion"] for e in five["data"]} == {1}


def test_an_execution_detail_lists_its_steps_in_order(api, merchant):
    flow = activated(api)
    run = execution(flow, contact_of(merchant), current_node_id="node-2", due_at=timezone.now())
    now = timezone.now()
    Step.objects.create(execution=run, node_id="node-1", type="send_message", status=StepStatus.COMPLETED,
                        started_at=now, finished_at=now, detail={"messageId": "m-1"})  # fmt: skip
    Step.objects.create(execution=run, node_id="node-2", type="wait", status=StepStatus.WAITING, started_at=now)

    response = api.get(f"{FLOWS}/{flow.pk}/executions/{run.pk}")

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["id"], data["currentNodeId"], data["flowVersion"]) == (str(run.pk), "node-2", 1)
    assert [(s["nodeId"], s["type"], s["status"], s["detail"]) for s in data["steps"]] == [
        ("node-1", "send_message", "completed", {"messageId": "m-1"}),
        ("node-2", "wait", "waiting", {}),
    ]
    assert data["steps"][1]["finishedAt"] is None


def test_an_execution_of_another_flow_or_no_execution_is_404(api, merchant):
    flow, other = activated(api), activated(api, name="Other")
    theirs = execution(other, contact_of(merchant))

    assert api.get(f"{FLOWS}/{flow.pk}/executions/{theirs.pk}").status_code == 404
    assert api.get(f"{FLOWS}/{flow.pk}/executions/{uuid.uuid4()}").status_code == 404
    assert api.get(f"{FLOWS}/{flow.pk}/executions/not-a-uuid").status_code == 404
    assert api.get(f"{FLOWS}/{other.pk}/executions/{theirs.pk}").status_code == 200


# --- enrolment ------------------------------------------------------------------------------------------------------


def test_enroll_starts_a_manual_flow_for_the_merchants_contacts(api, merchant, enroll_engine):
    account = AccountFactory.create(merchant=merchant)
    flow = activated(api, accountIds=[str(account.id)])
    ann, bob = (ContactFactory.create(account=account, merchant=merchant) for _ in range(2))
    elsewhere = contact_of(merchant)  # of an account the flow is not for
    assert post(api, flow.pk, "enroll", {"contactIds": [str(bob.id)]}).status_code == 200

    response = post(api, flow.pk, "enroll", {"contactIds": [str(ann.id), str(bob.id), str(elsewhere.id), str(ann.id)]})

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["enrolled"] == 1
    started = data["executions"][0]
    assert (started["contactId"], started["flowId"], started["flowVersion"]) == (str(ann.id), str(flow.pk), 1)
    assert (started["status"], started["currentNodeId"]) == ("running", "node-1")
    assert data["skipped"] == [
        {"contactId": str(bob.id), "reason": "already_enrolled"},
        {"contactId": str(elsewhere.id), "reason": "out_of_scope"},
    ]
    assert [c.pk for c in enroll_engine[-1][1]] == [ann.pk, bob.pk, elsewhere.pk]  # once each, in order
    assert Execution.objects.filter(flow=flow).count() == 2


@pytest.mark.parametrize(
    ("state", "field"), [("draft", "status"), ("inactive", "status"), ("not_manual", "trigger.type")]
)
def test_enroll_needs_an_active_manual_flow(api, merchant, enroll_engine, state, field):
    if state == "draft":
        flow_id = create(api)["id"]
    elif state == "inactive":
        flow_id = activated(api).pk
        post(api, flow_id, "deactivate")
    else:
        flow_id = activated(api, trigger={"type": "new_follower", "config": {}}).pk

    response = post(api, flow_id, "enroll", {"contactIds": [str(contact_of(merchant).id)]})

    assert error_field(response) == field
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert enroll_engine == []
    assert not Execution.objects.exists()


def test_enroll_refuses_bad_ids_and_contacts_not_of_the_merchant(api, merchant, enroll_engine):
    flow = activated(api)
    mine = str(contact_of(merchant).id)
    theirs = str(contact_of(MerchantFactory.create()).id)

    assert error_field(post(api, flow.pk, "enroll", {"contactIds": [mine, "nope"]})) == "contactIds[1]"
    assert error_field(post(api, flow.pk, "enroll", {"contactIds": []})) == "contactIds"
    too_many = [str(uuid.uuid4()) for _ in range(1001)]
    assert error_field(post(api, flow.pk, "enroll", {"contactIds": too_many})) == "contactIds"
    assert error_field(post(api, flow.pk, "enroll", {"contactIds": [mine, theirs]}), 404) == "contactIds[1]"
    unknown = str(uuid.uuid4())
    assert error_field(post(api, flow.pk, "enroll", {"contactIds": [unknown]}), 404) == "contactIds[0]"
    assert enroll_engine == []


# --- merchant scope and roles ---------------------------------------------------------------------------------------
