"""The flows API: CRUD, activation and numbered versions, stops, enrolment, executions; roles and merchant scope."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from automation import triggers
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, FlowVersion, Step, StepStatus
from campaigns.models import Template
from mktx.iam.models import Role
from tests.factories import AccountFactory, ContactFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
FLOWS = "/api/v1/mkt-x/automation/flows"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Welcome Flow",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {"id": "node-1", "type": "send_message", "config": {"content": "Hi {{name|friend}}"}},
            {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
            {"id": "node-3", "type": "end", "config": {}},
        ],
        "connections": [
            {"fromNodeId": "node-1", "toNodeId": "node-2"},
            {"fromNodeId": "node-2", "toNodeId": "node-3"},
        ],
        **overrides,
    }


def create(api: Any, **overrides: Any) -> dict[str, Any]:
    response = api.post(FLOWS, body(**overrides), format="json")
    assert response.status_code == 200, response.json()
    return dict(response.json()["data"])


def post(api: Any, flow_id: Any, verb: str, payload: Any = None) -> Any:
    return api.post(f"{FLOWS}/{flow_id}/{verb}", payload, format="json")


def activated(api: Any, **overrides: Any) -> Flow:
    flow_id = create(api, **overrides)["id"]
    assert post(api, flow_id, "activate").status_code == 200
    return Flow.objects.get(pk=flow_id)


def contact_of(merchant: Any) -> Any:
    return ContactFactory.create(account=AccountFactory.create(merchant=merchant), merchant=merchant)


def execution(flow: Flow, contact: Any, *, version: int | None = None, **fields: Any) -> Execution:
    number = version or flow.version
    flow_version = FlowVersion.objects.get_or_create(flow=flow, number=number, defaults={"trigger_type": "manual"})[0]
    fields.setdefault("started_at", timezone.now())
    return Execution.objects.create(
        merchant_id=flow.merchant_id, flow=flow, version=flow_version, contact=contact, **fields
    )


def error_field(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.json()
    assert response.json()["success"] is False
    return str(response.json()["details"].get("field"))


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


@pytest.fixture
def unthrottled(monkeypatch):
    """The rate limit's counter is a cache write (queries with the database cache of SQLite): not the list's own."""
    from automation.views import FlowViewSet

    monkeypatch.setattr(FlowViewSet, "throttle_classes", [])


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


@pytest.fixture
def enroll_engine(monkeypatch):
    """The engine's own contacts_enroll, with its calls recorded."""
    calls: list[tuple[Flow, list[Any]]] = []
    real = triggers.contacts_enroll

    def contacts_enroll(*, flow: Flow, contacts: list[Any]) -> list[tuple[Any, Any]]:
        calls.append((flow, list(contacts)))
        return real(flow=flow, contacts=contacts)

    monkeypatch.setattr(triggers, "contacts_enroll", contacts_enroll)
    return calls


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
