"""Issue 11, campaigns: the empty-conditions segment, one campaign's failure isolated from the others in the sender,
the card image uploaded once per run, missed recurrences skipped rather than replayed, and impossible or
out-of-range schedule datetimes answered 400."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from campaigns.campaigns import schedule_of
from campaigns.lanes import sender_step
from campaigns.models import Campaign, CampaignRun, Delivery, Template
from contacts.models import Segment
from tests.campaign_helpers import CLOCK_START, FreshTokenClient, connect, customer, drain
from tests.factories import MerchantFactory, UserFactory
from tests.test_campaigns import BASE, act, create, segment, template

pytestmark = pytest.mark.django_db

START = CLOCK_START


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)


@pytest.fixture
def fast(settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 100_000


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
    # given merchant A's scheduled campaign that can no longer start (its stored endAt has passed meanwhile)
    broken = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START + timedelta(minutes=5)).isoformat()},
    )
    assert act(api, broken["id"], "start").json()["data"]["status"] == "scheduled"
    Campaign.objects.filter(pk=broken["id"]).update(end_at=START - timedelta(days=1))
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
    assert "schedule.endAt" in failed.status_reason
    assert sandbox.dms(senderId=shop["id"]) == []


def test_a_campaign_whose_fire_raises_unexpectedly_fails_with_the_reason_and_the_sweep_goes_on(
    api, sandbox, shop, crowd, clock, fast
):
    from campaigns.lifecycle import campaigns_fire_due

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


def test_a_transient_database_error_on_firing_leaves_the_campaign_scheduled_for_the_next_sweep(
    api, sandbox, shop, crowd, clock, fast, monkeypatch
):
    from django.db import OperationalError

    from campaigns import lifecycle
    from campaigns.lifecycle import campaigns_fire_due

    data = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START + timedelta(minutes=5)).isoformat()},
    )
    assert act(api, data["id"], "start").json()["data"]["status"] == "scheduled"
    real_fire = lifecycle.campaign_fire

    def deadlocked(**kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(lifecycle, "campaign_fire", deadlocked)
    clock.move_to(START + timedelta(minutes=6))
    assert campaigns_fire_due(START + timedelta(minutes=6)) == 0
    assert Campaign.objects.get(pk=data["id"]).status == "scheduled"
    # when the database is itself again, the next sweep fires it
    monkeypatch.setattr(lifecycle, "campaign_fire", real_fire)
    assert campaigns_fire_due(START + timedelta(minutes=7)) == 1
    assert Campaign.objects.get(pk=data["id"]).status == "running"


def test_a_large_audience_whose_freeze_fails_fails_its_campaign_instead_of_being_retried_forever(
    api, sandbox, shop, crowd, clock, fast, settings
):
    from campaigns.tasks import freeze_run

    settings.MKTX_INLINE_FREEZE_LIMIT = 1  # frozen by a worker
    fans = segment(api, "Fans", "fans")
    data = create(api, [fans], template(api))
    assert act(api, data["id"], "start").json()["data"]["status"] == "running"
    Segment.objects.filter(pk=fans).update(conditions={"written": "by an older version"})
    run = CampaignRun.objects.get(campaign_id=data["id"])
    freeze_run(run.pk)
    run.refresh_from_db()
    campaign = Campaign.objects.get(pk=data["id"])
    assert (campaign.status, run.status) == ("failed", "cancelled")
    assert campaign.status_reason.startswith("conditions:")
    assert not Delivery.objects.filter(run=run).exists()


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
    assert schedule_of(Campaign.objects.get(pk=data["id"])).as_json() == data["schedule"]


@pytest.mark.parametrize("value", ["tomorrow", ["2027-01-01T00:00:00Z"], 5])
def test_a_schedule_that_is_not_an_object_is_400_on_update(api, crowd, value):
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": value}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["details"]["field"] == "schedule"


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


# --- 5. missed recurrences skipped, not replayed ----------------------------------------------------------------------

DAILY = {"frequency": "daily", "interval": 1}


@pytest.mark.parametrize("ago", [timedelta(days=30), timedelta(seconds=1)])
def test_it_refuses_a_past_start_for_a_recurrence_at_create_and_update(api, crowd, clock, ago):
    fans = segment(api, "Fans", "fans")
    past = {"startAt": (START - ago).isoformat(), "recurrence": DAILY}
    body = {"name": "X", "type": "promotional", "templateId": template(api), "segmentIds": [fans], "schedule": past}
    response = api.post(f"{BASE}/campaigns", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["details"]["field"] == "schedule.startAt"
    assert not Campaign.objects.exists()
    data = create(api, [fans], template(api), schedule={"recurrence": DAILY})
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": past}, format="json")
    assert response.status_code == 400 and response.json()["details"]["field"] == "schedule.startAt"
    assert schedule_of(Campaign.objects.get(pk=data["id"])).as_json() == data["schedule"]


def test_a_past_start_without_a_recurrence_is_still_a_send_now(api, crowd, clock, fast):
    data = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START - timedelta(days=30)).isoformat()},
    )
    assert act(api, data["id"], "start").json()["data"]["status"] == "running"


def test_a_recurrence_whose_start_passed_while_a_draft_is_not_started(api, crowd, clock):
    data = create(
        api,
        [segment(api, "Fans", "fans")],
        template(api),
        schedule={"startAt": (START + timedelta(hours=1)).isoformat(), "recurrence": DAILY},
    )
    clock.move_to(START + timedelta(days=3))
    response = act(api, data["id"], "start")
    assert response.status_code == 400 and response.json()["details"]["field"] == "schedule.startAt"
    assert Campaign.objects.get(pk=data["id"]).status == "draft"


def admin_page(owner, campaign_id):
    from django.test import Client

    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    return staff.get(f"/admin/campaigns/campaign/{campaign_id}/change/").content.decode()


def test_after_an_outage_a_recurrence_skips_to_the_next_occurrence_and_records_the_skipped(
    api, owner, sandbox, shop, crowd, clock, fast
):
    # given a daily recurrence whose first occurrence was sent
    first = START + timedelta(hours=1)
    data = create(
        api, [segment(api, "Fans", "fans")], template(api), schedule={"startAt": first.isoformat(), "recurrence": DAILY}
    )
    assert act(api, data["id"], "start").json()["data"]["status"] == "scheduled"
    clock.move_to(first + timedelta(seconds=1))
    drain(clock, until=first + timedelta(hours=1))
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 1
    # when nothing ran for three and a half days (the occurrences of days 1, 2 and 3 were missed)
    clock.move_to(first + timedelta(days=3, hours=12))
    drain(clock, until=first + timedelta(days=3, hours=13))
    # then none of them is sent late, the next one is scheduled and the skipped ones are recorded
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 1
    assert len(sandbox.dms(senderId=shop["id"])) == 3
    detail = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]
    assert detail["status"] == "scheduled"
    assert detail["skippedOccurrences"] == 3
    assert detail["lastSkippedAt"] == (first + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert detail["nextRunAt"] == (first + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "Skipped occurrences" in admin_page(owner, data["id"])
    # and the next one goes at its time, once
    clock.move_to(first + timedelta(days=4, seconds=1))
    drain(clock, until=first + timedelta(days=4, hours=1))
    runs = CampaignRun.objects.filter(campaign_id=data["id"]).order_by("number")
    assert [(r.number, r.started_at) for r in runs] == [(1, first), (2, first + timedelta(days=4))]
    assert len(sandbox.dms(senderId=shop["id"])) == 6


def test_a_late_fire_within_the_grace_still_sends_the_occurrence(api, sandbox, shop, crowd, clock, fast):
    data = create(api, [segment(api, "Fans", "fans")], template(api), schedule={"recurrence": DAILY})
    act(api, data["id"], "start")
    drain(clock, until=START + timedelta(hours=1))
    second = Campaign.objects.get(pk=data["id"]).next_run_at
    assert second is not None
    # the sweep picks the second occurrence up 20 minutes late
    clock.move_to(second + timedelta(minutes=20))
    drain(clock, until=second + timedelta(hours=1))
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 2
    assert Campaign.objects.get(pk=data["id"]).skipped_occurrences == 0


def test_a_missed_first_occurrence_is_skipped_and_the_recurrence_keeps_its_times(
    api, sandbox, shop, crowd, clock, fast
):
    first = START + timedelta(hours=1)
    until = (first + timedelta(days=2)).date().isoformat()
    schedule = {"startAt": first.isoformat(), "recurrence": {**DAILY, "until": until}}
    data = create(api, [segment(api, "Fans", "fans")], template(api), schedule=schedule)
    act(api, data["id"], "start")
    clock.move_to(first + timedelta(days=1, hours=6))  # an outage over the first two occurrences
    drain(clock, until=first + timedelta(days=1, hours=7))
    campaign = Campaign.objects.get(pk=data["id"])
    assert (campaign.status, campaign.run_count, campaign.skipped_occurrences) == ("scheduled", 0, 2)
    assert campaign.next_run_at == first + timedelta(days=2)
    clock.move_to(first + timedelta(days=2, seconds=1))
    drain(clock, until=first + timedelta(days=2, hours=1))
    campaign.refresh_from_db()
    assert (campaign.status, campaign.run_count) == ("completed", 1)  # the last occurrence, on its day
    assert CampaignRun.objects.get(campaign=campaign).started_at == first + timedelta(days=2)


# --- 4b. the card image fetched and uploaded once per run -----------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


class _CardImages:
    """An image server that counts the fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        images = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                images.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sale.png"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def card_image(settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    server = _CardImages()
    yield server
    server.server.shutdown()


def card_campaign(api, image_url):
    card = {
        "imageUrl": "https://cdn.example.com/sale.png",
        "buttons": [{"label": "Shop", "url": "https://shop.example"}],
    }
    body = {"name": "Card", "type": "card", "content": "Our sale", "variables": [], "card": card}
    response = api.post(f"{BASE}/templates", body, format="json")
    assert response.status_code == 200, response.json()
    template_id = response.json()["data"]["id"]
    # the API takes only https image URLs; the test's image server speaks plain http
    Template.objects.filter(pk=template_id).update(card={**card, "imageUrl": image_url})
    return create(api, [segment(api, "Fans", "fans")], template_id, variables={})


def test_a_card_image_is_fetched_and_uploaded_once_per_run_not_per_recipient(
    api, sandbox, shop, crowd, clock, fast, card_image
):
    data = card_campaign(api, card_image.url)
    assert act(api, data["id"], "start").status_code == 200
    drain(clock)
    dms = sandbox.dms(senderId=shop["id"])
    assert len(dms) == 3
    (upload,) = sandbox.media()
    assert upload["ownerId"] == shop["id"]
    assert [dm["mediaIds"] for dm in dms] == [[upload["id"]]] * 3
    assert card_image.fetches == 1
    assert set(Delivery.objects.filter(campaign_id=data["id"]).values_list("status", flat=True)) == {"sent"}


def test_a_media_id_x_no_longer_accepts_is_uploaded_again_once(api, sandbox, shop, crowd, clock, fast, card_image):
    data = card_campaign(api, card_image.url)
    assert act(api, data["id"], "start").status_code == 200
    sender_step()  # the first recipient, with the first upload
    assert len(sandbox.dms(senderId=shop["id"])) == 1
    sandbox.expire_media()  # as X does after 24 hours
    drain(clock)
    dms = sandbox.dms(senderId=shop["id"])
    assert len(dms) == 3
    first, second = (m["id"] for m in sandbox.media())
    assert [dm["mediaIds"] for dm in dms] == [[first], [second], [second]]
    assert card_image.fetches == 2
    assert set(Delivery.objects.filter(campaign_id=data["id"]).values_list("status", flat=True)) == {"sent"}


def test_each_run_of_a_recurrence_uploads_its_card_image_once(api, sandbox, shop, crowd, clock, fast, card_image):
    data = card_campaign(api, card_image.url)
    api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"recurrence": DAILY}}, format="json")
    act(api, data["id"], "start")
    drain(clock, until=START + timedelta(hours=1))
    second = Campaign.objects.get(pk=data["id"]).next_run_at
    assert second is not None
    clock.move_to(second + timedelta(seconds=1))
    drain(clock, until=START + timedelta(days=1, hours=1))
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 2
    assert len(sandbox.dms(senderId=shop["id"])) == 6
    assert len(sandbox.media()) == 2 and card_image.fetches == 2
