"""Campaigns over real HTTP against the X sandbox: lifecycle, audience, the paced exactly-once sender."""

from __future__ import annotations

import pytest
import time_machine
from django.utils import timezone

from campaigns.lanes import sender_step
from campaigns.lifecycle import campaign_start
from campaigns.models import Campaign, CampaignRun, Delivery, Template
from contacts.models import Segment
from tests.campaign_helpers import connect, customer, drain
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/mkt-x"


@pytest.fixture
def shop(api, sandbox):
    from mktx.accounts.services import webhook_url

    sandbox.register_webhook(webhook_url())
    return connect(api, sandbox)


@pytest.fixture
def people(sandbox, shop):
    return {
        "ann": customer(sandbox, shop, "ann_buyer", "vip", city="Lisbon"),
        "bob": customer(sandbox, shop, "bob_buyer", "vip", "wholesale", city="Porto"),
        "cid": customer(sandbox, shop, "cid_buyer", "wholesale", city="Faro"),
        "dan": customer(sandbox, shop, "dan_buyer"),
    }


def segment(api, name, tag):
    response = api.post(
        f"{BASE}/segments",
        {"name": name, "conditions": [{"field": "tags", "operator": "contains", "value": tag}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return response.json()["data"]["id"]


def template(api, content="Hi {{contact.displayName}}, use {{code}}", variables=("code",), **extra):
    body = {"name": "Promo", "type": "text", "content": content, "variables": list(variables), **extra}
    response = api.post(f"{BASE}/templates", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["data"]["id"]


@pytest.fixture
def vip(api, people):
    return segment(api, "VIP", "vip")


@pytest.fixture
def wholesale(api, people):
    return segment(api, "Wholesale", "wholesale")


def create(api, segments, tpl, **extra):
    body = {
        "name": "January Promotion",
        "type": "promotional",
        "templateId": tpl,
        "segmentIds": segments,
        "schedule": {"startAt": None, "endAt": None, "recurrence": None},
        "variables": {"code": "JAN10"},
        **extra,
    }
    response = api.post(f"{BASE}/campaigns", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def act(api, campaign_id, verb):
    return api.post(f"{BASE}/campaigns/{campaign_id}/{verb}", format="json")


@pytest.fixture
def fast(settings):
    """Limits out of the way where a test is not about pacing."""
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 100_000


# --- lifecycle ------------------------------------------------------------------------------------------------------


def test_create_answers_a_draft_with_zero_metrics(api, vip):
    data = create(api, [vip], template(api))
    assert data["status"] == "draft"
    assert data["segmentIds"] == [vip]
    assert data["metrics"] == {"totalSent": 0, "delivered": 0, "opened": 0, "clicked": 0, "replied": 0, "failed": 0}
    assert data["schedule"] == {"startAt": None, "endAt": None, "recurrence": None, "sendWindow": None}
    listed = api.get(f"{BASE}/campaigns?status=draft&type=promotional").json()
    assert [c["id"] for c in listed["data"]] == [data["id"]]
    assert api.get(f"{BASE}/campaigns?status=running").json()["data"] == []


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"name": ""}, "name", 400),
        ({"type": "spam"}, "type", 400),
        ({"templateId": "00000000-0000-0000-0000-000000000000"}, "templateId", 404),
        ({"segmentIds": ["00000000-0000-0000-0000-000000000000"]}, "segmentIds[0]", 404),
        ({"schedule": {"startAt": "tomorrow"}}, "schedule.startAt", 400),
        ({"schedule": {"startAt": "2027-01-02T10:00:00Z", "endAt": "2027-01-01T10:00:00Z"}}, "schedule.endAt", 400),
        ({"schedule": {"recurrence": {"frequency": "hourly"}}}, "schedule.recurrence.frequency", 400),
        ({"schedule": {"recurrence": {"frequency": "daily", "interval": 0}}}, "schedule.recurrence.interval", 400),
        ({"variables": {"code": ["x"]}}, "variables.code", 400),
        ({"colour": "red"}, "colour", 400),
    ],
)
def test_create_names_what_is_wrong(api, vip, change, field, status):
    body = {"name": "X", "type": "promotional", "templateId": template(api), "segmentIds": [vip], **change}
    response = api.post(f"{BASE}/campaigns", body, format="json")
    assert response.status_code == status, response.json()
    assert field in str(response.json()["details"])


def test_another_merchants_template_segment_and_campaign_are_404(api, vip, client_for):
    from tests.factories import UserFactory

    other = UserFactory.create(merchant=MerchantFactory.create())
    theirs = client_for(other)
    their_template = template(theirs)
    response = api.post(
        f"{BASE}/campaigns",
        {"name": "X", "type": "promotional", "templateId": their_template, "segmentIds": [vip]},
        format="json",
    )
    assert response.status_code == 404
    mine = create(api, [vip], template(api))
    assert theirs.get(f"{BASE}/campaigns/{mine['id']}").status_code == 404
    assert act(theirs, mine["id"], "start").status_code == 404


def test_agents_read_campaigns_but_do_not_write(api, client_for, agent, vip):
    data = create(api, [vip], template(api))
    as_agent = client_for(agent)
    assert as_agent.get(f"{BASE}/campaigns/{data['id']}").status_code == 200
    assert as_agent.get(f"{BASE}/campaigns/{data['id']}/metrics").status_code == 200
    assert act(as_agent, data["id"], "start").status_code == 403
    assert as_agent.put(f"{BASE}/campaigns/{data['id']}", {"name": "Y"}, format="json").status_code == 403


def test_start_freezes_the_union_of_overlapping_segments_once_per_contact(api, people, vip, wholesale, fast):
    data = create(api, [vip, wholesale], template(api))
    response = act(api, data["id"], "start")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "running"
    deliveries = Delivery.objects.filter(campaign_id=data["id"])
    expected = {people[n]["contact"].pk for n in ("ann", "bob", "cid")}  # bob is in both segments
    assert {d.contact_id for d in deliveries} == expected and deliveries.count() == 3
    assert {d.account_id for d in deliveries} == {people["ann"]["contact"].account_id}
    assert CampaignRun.objects.get(campaign_id=data["id"]).audience_size == 3


def test_the_whole_audience_is_messaged_once_and_the_campaign_completes(api, sandbox, shop, people, vip, fast):
    data = create(api, [vip], template(api))
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        act(api, data["id"], "start")
        drain(traveller)
    dms = sandbox.dms(senderId=shop["id"])
    assert sorted(dm["recipientId"] for dm in dms) == sorted([people["ann"]["id"], people["bob"]["id"]])
    assert {dm["text"] for dm in dms} == {"Hi Ann Buyer, use JAN10", "Hi Bob Buyer, use JAN10"}
    campaign = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]
    assert campaign["status"] == "completed"
    assert campaign["metrics"]["totalSent"] == 2 and campaign["metrics"]["delivered"] == 2
    for delivery in Delivery.objects.filter(campaign_id=data["id"]):
        assert delivery.status == "sent"
        assert delivery.dm_event_id in {dm["id"] for dm in dms}
        assert delivery.message is not None and delivery.message.origin == "campaign"


def test_refused_transitions_answer_400_naming_the_state(api, vip, fast):
    data = create(api, [vip], template(api))
    for verb in ("pause", "resume"):
        response = act(api, data["id"], verb)
        assert response.status_code == 400
        assert response.json()["details"]["status"] == "draft"
    assert act(api, data["id"], "start").status_code == 200
    assert act(api, data["id"], "start").status_code == 400
    assert act(api, data["id"], "resume").status_code == 400
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"name": "Renamed"}, format="json")
    assert response.status_code == 400
    assert act(api, data["id"], "pause").json()["data"]["status"] == "paused"
    assert act(api, data["id"], "pause").status_code == 400
    assert act(api, data["id"], "resume").json()["data"]["status"] == "running"
    assert act(api, data["id"], "cancel").json()["data"]["status"] == "cancelled"
    for verb in ("start", "pause", "resume", "cancel"):
        assert act(api, data["id"], verb).status_code == 400
    skipped = Delivery.objects.filter(campaign_id=data["id"]).values_list("status", "reason")
    assert set(skipped) == {("skipped", "cancelled")}


def test_update_in_draft_changes_what_was_sent(api, vip, wholesale):
    data = create(api, [vip], template(api))
    response = api.put(
        f"{BASE}/campaigns/{data['id']}",
        {"name": "Updated Campaign Name", "segmentIds": [wholesale], "schedule": {"startAt": "2030-01-21T10:00:00Z"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    updated = response.json()["data"]
    assert updated["name"] == "Updated Campaign Name"
    assert updated["segmentIds"] == [wholesale]
    assert updated["schedule"]["startAt"] == "2030-01-21T10:00:00Z"


def test_two_starts_of_the_same_campaign_start_it_once(api, vip, fast):
    data = create(api, [vip], template(api))
    first, second = Campaign.objects.get(pk=data["id"]), Campaign.objects.get(pk=data["id"])
    campaign_start(campaign=first)
    with pytest.raises(Exception, match="Cannot start a running campaign"):
        campaign_start(campaign=second)  # its in-memory state still says draft: the conditional update refuses
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 1
    assert Delivery.objects.filter(campaign_id=data["id"]).count() == 2


@pytest.mark.parametrize(
    ("setup", "field"),
    [
        ("no_segments", "segmentIds"),
        ("template_deleted", "templateId"),
        ("variable_missing", "variables.code"),
        ("attribute_missing", "variables.contact.attributes.tier"),
    ],
)
def test_start_refuses_what_cannot_be_sent_and_names_it(api, vip, setup, field):
    if setup == "attribute_missing":
        tpl = template(api, content="You are {{contact.attributes.tier}}", variables=())
    else:
        tpl = template(api)
    data = create(api, [vip], tpl, variables={} if setup == "variable_missing" else {"code": "X"})
    campaign = Campaign.objects.get(pk=data["id"])
    if setup == "no_segments":
        campaign.segments.clear()
    if setup == "template_deleted":
        Template.objects.filter(pk=tpl).delete()
    response = act(api, data["id"], "start")
    assert response.status_code == 400, response.json()
    assert response.json()["details"]["field"] == field
    assert Campaign.objects.get(pk=data["id"]).status == "draft"
    assert not Delivery.objects.filter(campaign_id=data["id"]).exists()


def test_a_placeholder_default_or_every_contact_having_the_value_is_enough(api, people, vip, fast):
    tpl = template(api, content="{{contact.attributes.city}} {{contact.attributes.tier|member}}", variables=())
    data = create(api, [vip], tpl, variables={})
    assert act(api, data["id"], "start").status_code == 200


def test_a_segment_in_use_by_a_running_campaign_is_409(api, vip, fast):
    data = create(api, [vip], template(api))
    act(api, data["id"], "start")
    response = api.delete(f"{BASE}/segments/{vip}")
    assert response.status_code == 409
    assert data["id"] in str(response.json()["details"])
    assert Segment.objects.filter(pk=vip).exists()


def test_sender_step_with_nothing_to_do_answers_none():
    assert sender_step() is None


def test_the_admin_shows_progress_and_pauses_resumes_and_cancels_with_the_same_services(api, owner, vip, fast):
    from django.test import Client

    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    data = create(api, [vip], template(api))
    act(api, data["id"], "start")
    listing = staff.get("/admin/campaigns/campaign/").content.decode()
    assert "0/2 (0%)" in listing
    detail = staff.get(f"/admin/campaigns/campaign/{data['id']}/change/").content.decode()
    assert "estimated completion" in detail.lower() and "total_sent 0" in detail

    def run(action):
        return staff.post(
            "/admin/campaigns/campaign/", {"action": action, "_selected_action": [data["id"]]}, follow=True
        )

    run("pause_campaigns")
    assert Campaign.objects.get(pk=data["id"]).status == "paused"
    page = run("pause_campaigns").content.decode()
    assert "Cannot pause a paused campaign" in page
    run("resume_campaigns")
    assert Campaign.objects.get(pk=data["id"]).status == "running"
    run("cancel_campaigns")
    assert Campaign.objects.get(pk=data["id"]).status == "cancelled"
    deliveries = staff.get("/admin/campaigns/delivery/?status__exact=skipped&reason=cancelled")
    assert deliveries.status_code == 200 and "cancelled" in deliveries.content.decode()
    delivery = Delivery.objects.filter(campaign_id=data["id"])[0]
    assert staff.post(f"/admin/campaigns/delivery/{delivery.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_large_audience_is_frozen_by_a_worker_and_nothing_completes_before(api, sandbox, shop, vip, fast, settings):
    from campaigns.tasks import freeze_run

    settings.MKTX_INLINE_FREEZE_LIMIT = 1  # the VIP segment counts 2: too many to freeze inside the request
    data = create(api, [vip], template(api))
    assert act(api, data["id"], "start").json()["data"]["status"] == "running"
    run = CampaignRun.objects.get(campaign_id=data["id"])
    assert run.audience_frozen_at is None and not Delivery.objects.filter(run=run).exists()
    sender_step()  # an unfrozen run is not an empty one
    assert Campaign.objects.get(pk=data["id"]).status == "running"
    assert freeze_run(run.pk) == "2 recipients"
    assert freeze_run(run.pk) == "already frozen"
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        drain(traveller)
    assert Delivery.objects.filter(run=run, status="sent").count() == 2
    assert Campaign.objects.get(pk=data["id"]).status == "completed"


def test_an_update_sets_and_clears_the_send_window_and_keeps_the_rest_of_the_schedule(api, vip):
    start = "2030-01-20T10:00:00Z"
    data = create(api, [vip], template(api), schedule={"startAt": start})
    window = {"start": "09:00", "end": "21:00", "days": ["monday", "friday"]}
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"sendWindow": window}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["schedule"] == {
        "startAt": start, "endAt": None, "recurrence": None, "sendWindow": window
    }  # fmt: skip
    wrong = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"sendWindow": {"start": "9am"}}}, format="json")
    assert wrong.status_code == 400 and wrong.json()["details"]["field"] == "schedule.sendWindow.start"
    cleared = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"sendWindow": None}}, format="json")
    assert cleared.json()["data"]["schedule"]["sendWindow"] is None
    assert cleared.json()["data"]["schedule"]["startAt"] == start
