"""Issue 11, campaigns: the empty-conditions segment, one campaign's failure isolated from the others in the sender,
the card image uploaded once per run, missed recurrences skipped rather than replayed, and impossible or
out-of-range schedule datetimes answered 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign, Delivery
from tests.campaign_helpers import FreshTokenClient, connect, customer, drain
from tests.factories import MerchantFactory, UserFactory
from tests.test_campaigns import BASE, act, create, segment, template

pytestmark = pytest.mark.django_db

START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


@pytest.fixture
def fast(settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 100_000


@pytest.fixture
def shop(api, sandbox, clock):
    return connect(api, sandbox)


@pytest.fixture
def crowd(sandbox, shop):
    return [customer(sandbox, shop, f"fan_{i}", "fans") for i in range(3)]


def everyone(api):
    response = api.post(f"{BASE}/segments", {"name": "Everyone", "conditions": []}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


# --- 1. the empty-conditions segment ----------------------------------------------------------------------------------


def test_it_sends_a_campaign_on_an_empty_conditions_segment_to_every_contact_of_the_merchant(
    api, sandbox, shop, crowd, clock, fast
):
    # given another merchant's contacts, which must stay out of the audience
    other_owner = UserFactory.create(merchant=MerchantFactory.create())
    other = connect(FreshTokenClient(other_owner), sandbox, username="other_shop")
    customer(sandbox, other, "stranger", "fans")
    seg = everyone(api)
    # when
    data = create(api, [seg["id"]], template(api))
    response = act(api, data["id"], "start")
    # then count, preview and the frozen audience agree
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "running"
    preview = api.post(f"{BASE}/segments/{seg['id']}/preview").json()["data"]
    assert seg["contactCount"] == preview["totalMatches"] == 3
    recipients = set(Delivery.objects.filter(campaign_id=data["id"]).values_list("contact_id", flat=True))
    assert recipients == {person["contact"].pk for person in crowd}
    drain(clock)
    assert len(sandbox.dms(senderId=shop["id"])) == 3
    assert sandbox.dms(senderId=other["id"]) == []


def test_it_fires_a_scheduled_campaign_on_an_empty_conditions_segment(api, sandbox, shop, crowd, clock, fast):
    data = create(
        api, [everyone(api)["id"]], template(api), schedule={"startAt": (START + timedelta(hours=1)).isoformat()}
    )
    assert act(api, data["id"], "start").json()["data"]["status"] == "scheduled"
    clock.move_to(START + timedelta(hours=1, seconds=1))
    drain(clock)
    assert Campaign.objects.get(pk=data["id"]).status == "completed"
    assert len(sandbox.dms(senderId=shop["id"])) == 3


def test_one_campaign_that_cannot_fire_fails_and_the_other_merchants_deliveries_still_go_out(
    api, sandbox, shop, crowd, clock, fast
):
    # given merchant A's scheduled campaign whose stored schedule no longer reads (a row from an older version)
    broken = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START + timedelta(minutes=5)).isoformat()},
    )
    assert act(api, broken["id"], "start").json()["data"]["status"] == "scheduled"
    Campaign.objects.filter(pk=broken["id"]).update(schedule={"startAt": "2027-02-30T10:00:00Z"})
    # and merchant B's running campaign with deliveries waiting
    other_api = FreshTokenClient(UserFactory.create(merchant=MerchantFactory.create()))
    other = connect(other_api, sandbox, username="other_shop")
    customer(sandbox, other, "b_customer", "fans")
    running = create(other_api, [segment(other_api, "Fans", "fans")], template(other_api))
    assert act(other_api, running["id"], "start").status_code == 200
    clock.move_to(START + timedelta(minutes=6))
    # when
    drain(clock)
    # then
    assert [dm["recipientId"] for dm in sandbox.dms(senderId=other["id"])] != []
    assert Campaign.objects.get(pk=running["id"]).status == "completed"
    failed = Campaign.objects.get(pk=broken["id"])
    assert failed.status == "failed" and failed.next_run_at is None
    assert "schedule.startAt" in failed.status_reason
    assert sandbox.dms(senderId=shop["id"]) == []


def test_a_campaign_whose_fire_raises_unexpectedly_fails_with_the_reason_and_the_sweep_goes_on(
    api, sandbox, shop, crowd, clock, fast
):
    from campaigns.sender import campaigns_fire_due

    # given two due campaigns, the first of which raises a non-API error on firing (its variables stored as a list)
    bad_segment = segment(api, "Bad", "fans")
    bad = create(api, [bad_segment], template(api), schedule={"startAt": (START + timedelta(minutes=5)).isoformat()})
    good = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START + timedelta(minutes=5)).isoformat()},
    )
    for item in (bad, good):
        assert act(api, item["id"], "start").json()["data"]["status"] == "scheduled"
    Campaign.objects.filter(pk=bad["id"]).update(variables=["not", "an", "object"])
    clock.move_to(START + timedelta(minutes=6))
    # when
    fired = campaigns_fire_due(START + timedelta(minutes=6))
    # then
    assert fired == 1
    assert Campaign.objects.get(pk=good["id"]).status == "running"
    failed = Campaign.objects.get(pk=bad["id"])
    assert failed.status == "failed" and failed.status_reason
    assert not Delivery.objects.filter(campaign_id=bad["id"]).exists()


# --- 7. impossible and out-of-range schedule datetimes ----------------------------------------------------------------

BAD_TIMES = ["2024-02-30T10:00:00Z", "9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+05:00", "2024-13-01T00:00:00Z"]


@pytest.mark.parametrize("value", BAD_TIMES)
@pytest.mark.parametrize("field", ["startAt", "endAt"])
def test_it_answers_400_naming_the_field_for_an_impossible_or_out_of_range_schedule_time(api, crowd, field, value):
    body = {
        "name": "X",
        "type": "promotional",
        "templateId": template(api),
        "segmentIds": [segment(api, "Fans", "fans")],
        "schedule": {field: value},
    }
    response = api.post(f"{BASE}/campaigns", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["details"]["field"] == f"schedule.{field}"
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("value", BAD_TIMES)
def test_it_answers_400_for_an_impossible_schedule_time_on_update(api, crowd, value):
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"startAt": value}}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["details"]["field"] == "schedule.startAt"
    assert Campaign.objects.get(pk=data["id"]).schedule == data["schedule"]


@pytest.mark.parametrize("value", ["2024-02-30", "0001-01-01", "9999-12-31"])
def test_it_answers_400_for_an_impossible_or_out_of_range_recurrence_end(api, crowd, value):
    body = {
        "name": "X",
        "type": "promotional",
        "templateId": template(api),
        "segmentIds": [segment(api, "Fans", "fans")],
        "schedule": {"recurrence": {"frequency": "daily", "until": value}},
    }
    response = api.post(f"{BASE}/campaigns", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["details"]["field"] == "schedule.recurrence.until"
