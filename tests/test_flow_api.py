"""The flows API: CRUD, activation and numbered versions, stops, enrolment, executions; roles and merchant scope."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from automation.models import ExecutionStatus, Flow, FlowStatus, FlowVersion, Step, StepStatus
from campaigns.models import Template
from mktx.iam.models import Role
from tests.factories import AccountFactory, MerchantFactory, UserFactory
from tests.flow_api_helpers import FLOWS, activated, body, contact_of, create, error_field, execution, post

pytestmark = pytest.mark.django_db
# --- create, read, list ------------------------------------------------------------------------------------------


def test_it_creates_a_draft_flow_as_the_reference_shows_and_reads_it_back(api, merchant):
    template = Template.objects.create(merchant=merchant, name="Welcome", content="Hi")
    second = Template.objects.create(merchant=merchant, name="Day two", content="Still here?")
    nodes = [
        {"id": "node-1", "type": "send_message", "config": {"templateId": str(template.id), "delay": 0}},
        {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
        {"id": "node-3", "type": "send_message", "config": {"templateId": str(second.id), "delay": 0}},
    ]

    created = create(api, trigger={"type": "new_follower", "config": {}}, nodes=nodes)

    assert created["status"] == "draft"
    assert created["version"] == 0
    assert created["trigger"]["type"] == "new_follower"
    assert [node["id"] for node in created["nodes"]] == ["node-1", "node-2", "node-3"]
    assert created["nodes"][0]["config"]["templateId"] == str(template.id)
    assert created["connections"] == [
        {"fromNodeId": "node-1", "toNodeId": "node-2"},
        {"fromNodeId": "node-2", "toNodeId": "node-3"},
    ]
    assert created["accountIds"] is None
    assert created["executions"] == {"running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert {"id", "name", "description", "createdAt", "updatedAt"} <= set(created)
    fetched = api.get(f"{FLOWS}/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["data"] == created
    assert Flow.objects.get(pk=created["id"]).merchant_id == merchant.id


def test_it_scopes_a_flow_to_some_accounts_of_the_merchant(api, merchant):
    account = AccountFactory.create(merchant=merchant)
    foreign = AccountFactory.create()

    created = create(api, accountIds=[str(account.id)])
    refused = api.post(FLOWS, body(accountIds=[str(account.id), str(foreign.id)]), format="json")

    assert created["accountIds"] == [str(account.id)]
    assert error_field(refused).startswith("accountIds")
    assert Flow.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(trigger={"type": "sometimes", "config": {}}), "trigger.type"),
        (body(nme="typo"), "nme"),
        ([body()], "body"),
        ({k: v for k, v in body().items() if k != "name"}, "name"),
    ],
)
def test_it_refuses_an_invalid_flow_naming_the_field(api, payload, field):
    assert error_field(api.post(FLOWS, payload, format="json")) == field
    assert not Flow.objects.exists()


def test_it_lists_the_merchants_flows_newest_first_filtered_by_status(api, merchant):
    first = create(api, name="First")
    second = create(api, name="Second")
    post(api, first["id"], "activate")
    other = Flow.objects.create(merchant=MerchantFactory.create(), name="Theirs", trigger_type="manual")

    everything = api.get(FLOWS).json()
    active = api.get(FLOWS, {"status": "active"}).json()
    drafts = api.get(FLOWS, {"status": "draft", "take": 1}).json()
    bad = api.get(FLOWS, {"status": "paused"})

    assert [f["id"] for f in everything["data"]] == [second["id"], first["id"]]
    assert str(other.id) not in {f["id"] for f in everything["data"]}
    assert [(f["id"], f["status"], f["version"]) for f in active["data"]] == [(first["id"], "active", 1)]
    assert [f["id"] for f in drafts["data"]] == [second["id"]]
    assert drafts["pagination"] == {"page": 1, "limit": 1, "total": 1, "totalPages": 1}
    assert error_field(bad) == "status"


def test_the_flow_list_counts_executions_in_a_constant_number_of_queries(
    api, merchant, unthrottled, django_assert_num_queries
):
    contact = contact_of(merchant)

    def flows(n: int) -> None:
        for i in range(n):
            flow = activated(api, name=f"Flow {i}")
            execution(flow, contact, status=ExecutionStatus.COMPLETED, completed_at=timezone.now())
            execution(flow, contact, status=ExecutionStatus.RUNNING)

    flows(1)
    with django_assert_num_queries(4):  # the caller, the count, the page, the executions' counts of the page
        single = api.get(FLOWS).json()
    flows(4)
    with django_assert_num_queries(4):
        five = api.get(FLOWS).json()

    assert single["data"][0]["executions"] == {"running": 1, "completed": 1, "failed": 0, "cancelled": 0}
    assert len(five["data"]) == 5
    assert all(f["executions"] == single["data"][0]["executions"] for f in five["data"])


# --- update --------------------------------------------------------------------------------------------------------


def test_an_update_of_a_draft_replaces_the_keys_given_and_keeps_the_others(api):
    flow = create(api, description="Greets")

    response = api.put(f"{FLOWS}/{flow['id']}", {"name": "Updated Welcome Flow"}, format="json")

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["name"], data["description"], data["nodes"]) == ("Updated Welcome Flow", "Greets", flow["nodes"])
    assert Flow.objects.get(pk=flow["id"]).name == "Updated Welcome Flow"


def test_an_update_of_an_active_flow_is_400_and_changes_nothing(api):
    flow = activated(api)
    before = Flow.objects.filter(pk=flow.pk).values().get()

    response = api.put(f"{FLOWS}/{flow.pk}", {"name": "Sneaky"}, format="json")

    assert error_field(response) == "status"
    assert "deactivate first" in response.json()["error"]
    assert Flow.objects.filter(pk=flow.pk).values().get() == before


def test_an_inactive_flow_can_be_edited_again(api):
    flow = activated(api)
    assert post(api, flow.pk, "deactivate").status_code == 200

    response = api.put(f"{FLOWS}/{flow.pk}", {"name": "Second try"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "inactive"


# --- activation and versions ------------------------------------------------------------------------------------


def test_activating_twice_keeps_version_1(api):
    flow_id = create(api)["id"]

    first = post(api, flow_id, "activate")
    second = post(api, flow_id, "activate")

    assert first.status_code == second.status_code == 200
    assert (second.json()["data"]["status"], second.json()["data"]["version"]) == ("active", 1)
    assert list(FlowVersion.objects.filter(flow_id=flow_id).values_list("number", flat=True)) == [1]


def test_activate_edit_activate_makes_version_2_and_an_execution_keeps_version_1(api, merchant):
    flow = activated(api)
    running = execution(flow, contact_of(merchant), current_node_id="node-2")
    assert post(api, flow.pk, "deactivate").status_code == 200
    running.refresh_from_db()
    assert running.status == ExecutionStatus.CANCELLED
    # a run that was still going (as when a later deactivation raced with it) keeps its version
    kept = execution(flow, contact_of(merchant), version=1, status=ExecutionStatus.COMPLETED)

    nodes = [*body()["nodes"][:2], {"id": "node-3", "type": "send_message", "config": {"content": "Bye"}}]
    edited = api.put(f"{FLOWS}/{flow.pk}", {"nodes": nodes}, format="json")
    again = post(api, flow.pk, "activate")

    assert edited.status_code == 200, edited.json()
    assert again.status_code == 200, again.json()
    assert again.json()["data"]["version"] == 2
    versions = {v.number: v for v in FlowVersion.objects.filter(flow=flow)}
    assert sorted(versions) == [1, 2]
    assert versions[1].nodes[2]["type"] == "end"
    assert versions[2].nodes[2]["type"] == "send_message"
    kept.refresh_from_db()
    assert kept.version.number == 1
    listed = api.get(f"{FLOWS}/{flow.pk}/executions").json()["data"]
    assert {e["id"]: e["flowVersion"] for e in listed} == {str(kept.pk): 1, str(running.pk): 1}


def test_activation_checks_the_definition_again(api, merchant):
    template = Template.objects.create(merchant=merchant, name="Welcome", content="Hi")
    nodes = [{"id": "node-1", "type": "send_message", "config": {"templateId": str(template.id)}}]
    flow_id = create(api, nodes=nodes, connections=[])["id"]
    template.delete()

    response = post(api, flow_id, "activate")

    assert error_field(response) == "nodes[0].config.templateId"
    assert Flow.objects.get(pk=flow_id).status == FlowStatus.DRAFT
    assert not FlowVersion.objects.exists()


# --- stops -----------------------------------------------------------------------------------------------------------


def test_deactivating_cancels_the_running_executions_only(api, merchant):
    flow = activated(api)
    waiting = execution(flow, contact_of(merchant), current_node_id="node-2", due_at=timezone.now())
    step = Step.objects.create(
        execution=waiting, node_id="node-2", type="wait", status=StepStatus.WAITING, started_at=timezone.now()
    )
    done = execution(flow, contact_of(merchant), status=ExecutionStatus.COMPLETED, completed_at=timezone.now())

    response = post(api, flow.pk, "deactivate")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "inactive"
    assert response.json()["data"]["executions"] == {"running": 0, "completed": 1, "failed": 0, "cancelled": 1}
    waiting.refresh_from_db()
    done.refresh_from_db()
    step.refresh_from_db()
    assert (waiting.status, waiting.error) == (ExecutionStatus.CANCELLED, "flow_deactivated")
    assert step.status == StepStatus.CANCELLED
    assert (done.status, done.error) == (ExecutionStatus.COMPLETED, "")


def test_deactivating_a_draft_is_400_and_an_inactive_flow_is_answered_as_it_is(api):
    draft = create(api)["id"]
    flow = activated(api)
    post(api, flow.pk, "deactivate")

    assert error_field(post(api, draft, "deactivate")) == "status"
    assert Flow.objects.get(pk=draft).status == FlowStatus.DRAFT
    again = post(api, flow.pk, "deactivate")
    assert again.status_code == 200
    assert again.json()["data"]["status"] == "inactive"


def test_deleting_a_flow_cancels_its_executions_and_it_is_gone(api, merchant):
    flow = activated(api)
    running = execution(flow, contact_of(merchant), current_node_id="node-2")

    response = api.delete(f"{FLOWS}/{flow.pk}")

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": None}
    running.refresh_from_db()
    assert (running.status, running.error) == (ExecutionStatus.CANCELLED, "flow_deleted")
    flow.refresh_from_db()
    assert flow.deleted_at is not None
    assert flow.status == FlowStatus.INACTIVE
    assert api.get(f"{FLOWS}/{flow.pk}").status_code == 404
    assert api.delete(f"{FLOWS}/{flow.pk}").status_code == 404
    assert api.get(FLOWS).json()["data"] == []


# --- executions ------------------------------------------------------------------------------------------------------


EVERY_FLOW_ENDPOINT = [
    ("get", ""),
    ("put", ""),
    ("delete", ""),
    ("post", "/activate"),
    ("post", "/deactivate"),
    ("get", "/executions"),
    ("get", "/executions/{execution}"),
    ("post", "/enroll"),
]


@pytest.mark.parametrize(("method", "suffix"), EVERY_FLOW_ENDPOINT)
def test_another_merchants_flow_is_404_on_every_endpoint(api, client_for, enroll_engine, method, suffix):
    other = MerchantFactory.create()
    theirs = activated(client_for(UserFactory.create(merchant=other, role=Role.OWNER)))
    their_run = execution(theirs, contact_of(other))
    before = Flow.objects.filter(pk=theirs.pk).values().get()
    url = f"{FLOWS}/{theirs.pk}{suffix.format(execution=their_run.pk)}"
    payload: dict[str, Any] = {"name": "Mine now"}
    if suffix == "/enroll":
        payload = {"contactIds": [str(their_run.contact_id)]}

    if method in ("put", "post"):
        response = getattr(api, method)(url, payload, format="json")
    else:
        response = getattr(api, method)(url)

    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "RESOURCE_NOT_FOUND"
    assert Flow.objects.filter(pk=theirs.pk).values().get() == before
    their_run.refresh_from_db()
    assert their_run.status == ExecutionStatus.RUNNING


WRITES = [
    ("post", ""),
    ("put", "/{flow}"),
    ("delete", "/{flow}"),
    ("post", "/{flow}/activate"),
    ("post", "/{flow}/deactivate"),
    ("post", "/{flow}/enroll"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_an_agent_may_read_flows_but_every_write_is_403_and_changes_nothing(
    api, client_for, agent, merchant, enroll_engine, method, path
):
    flow = activated(api)
    run = execution(flow, contact_of(merchant))
    before = list(Flow.objects.values())
    payload = {"contactIds": [str(run.contact_id)]} if path.endswith("enroll") else body(name="Agent's")
    as_agent = client_for(agent)

    response = getattr(as_agent, method)(FLOWS + path.format(flow=flow.pk), payload, format="json")

    assert response.status_code == 403, response.json()
    assert response.json()["code"] == "FORBIDDEN"
    assert list(Flow.objects.values()) == before
    assert list(FlowVersion.objects.values_list("number", flat=True)) == [1]
    run.refresh_from_db()
    assert run.status == ExecutionStatus.RUNNING
    assert enroll_engine == []
    for url in (FLOWS, f"{FLOWS}/{flow.pk}", f"{FLOWS}/{flow.pk}/executions", f"{FLOWS}/{flow.pk}/executions/{run.pk}"):
        assert as_agent.get(url).status_code == 200, url


def test_an_admin_may_write_flows(client_for, merchant):
    admin = client_for(UserFactory.create(merchant=merchant, role=Role.ADMIN))

    flow_id = create(admin)["id"]

    assert post(admin, flow_id, "activate").status_code == 200
    assert post(admin, flow_id, "deactivate").status_code == 200
    assert admin.delete(f"{FLOWS}/{flow_id}").status_code == 200


def test_a_flow_read_with_get_can_be_put_back_as_it_is_with_a_change(api):
    flow = api.post(FLOWS, body(), format="json").json()["data"]
    read = api.get(f"{FLOWS}/{flow['id']}").json()["data"]
    response = api.put(f"{FLOWS}/{flow['id']}", {**read, "name": "Renamed"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["name"] == "Renamed"
    assert response.json()["data"]["nodes"] == read["nodes"]
    assert error_field(api.put(f"{FLOWS}/{flow['id']}", {**read, "nmae": "typo"}, format="json")) == "nmae"
