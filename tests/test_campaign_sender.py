"""The campaign sender against the X sandbox, with the clock moved: pacing and quotas, scheduling, endAt,
recurrence, pause and resume, X's failures, a worker killed mid-send, consent at send time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.utils.dateparse import parse_datetime

from campaigns.lanes import sender_step
from campaigns.models import Campaign, CampaignRun, Delivery
from contacts.models import ConsentAction, Contact, Message
from contacts.services.consent import contact_consent_set
from contacts.services.contacts import contact_tags_add
from mktx.xapi.client import XClient
from tests.campaign_helpers import CLOCK_START, FreshTokenClient, connect, customer, drain
from tests.test_campaigns import BASE, act, create, segment, template

pytestmark = pytest.mark.django_db

START = CLOCK_START


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)


@pytest.fixture
def shop(api, sandbox, clock):
    from mktx.accounts.services import webhook_url

    sandbox.register_webhook(webhook_url())
    return connect(api, sandbox)


@pytest.fixture
def crowd(sandbox, shop):
    return [customer(sandbox, shop, f"fan_{i}", "fans") for i in range(4)]


@pytest.fixture
def fans(api, crowd):
    return segment(api, "Fans", "fans")


def started(api, fans, **extra):
    data = create(api, [fans], template(api), **extra)
    response = act(api, data["id"], "start")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def sent_times(sandbox, shop):
    return [parse_datetime(dm["createdAt"]) for dm in sandbox.dms(senderId=shop["id"])]


def statuses(campaign_id):
    return sorted(Delivery.objects.filter(campaign_id=campaign_id).values_list("status", flat=True))


# --- pacing ---------------------------------------------------------------------------------------------------------


def test_a_four_recipient_campaign_goes_at_xs_pace_not_the_daily_caps(api, sandbox, shop, fans, clock, settings):
    # given the defaults: 500 DMs a day (the old spacing: one per 173 s) and X's 15 per 15 minutes
    data = started(api, fans)
    # when the sender runs with the clock moving to each next slot
    drain(clock)
    # then the first DM goes at once and the others one a minute, as X's window allows
    times = sent_times(sandbox, shop)
    assert len(times) == 4
    assert (times[0] - START).total_seconds() < 5
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(59 <= gap < 62 for gap in gaps), gaps
    assert Campaign.objects.get(pk=data["id"]).status == "completed"
    assert Message.objects.filter(status="failed").count() == 0  # no 429


def test_before_x_has_answered_the_minimum_interval_spaces_the_first_sends(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_MIN_SEND_INTERVAL_MS = 5000
    sandbox.limits(dm15m=100_000)  # X's window would allow them back to back
    started(api, fans)
    drain(clock)
    times = sent_times(sandbox, shop)
    assert len(times) == 4
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap < 1 for gap in gaps[1:]), gaps  # X answered the first: its window paces the rest
    assert 0 <= gaps[0] < 1 or 5 <= gaps[0] < 6, gaps


def test_xs_own_limit_paces_when_it_is_the_tightest(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    sandbox.limits(dm15m=3)  # X allows 3 DMs per 15 minutes: one per 300 s
    started(api, fans)
    drain(clock)
    times = sent_times(sandbox, shop)
    assert len(times) == 4
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(295 <= gap < 305 for gap in gaps), gaps  # learnt from X's headers after the first send
    assert all(sum(0 <= (t - start).total_seconds() < 900 for t in times) <= 3 for start in times)
    # never a 429 caused by the pacing
    assert Message.objects.filter(status="failed").count() == 0


def test_what_does_not_fit_the_quota_waits_and_resumes_by_itself(api, sandbox, shop, crowd, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 5  # per rolling 24 h, shared with the staff's replies
    settings.MKTX_REPLY_RESERVE = 0
    for person in crowd:  # the staff answered everyone this morning: 4 of the 5 DMs are used
        conversation = Contact.objects.get(pk=person["contact"].pk).conversations.get()
        response = api.post(f"{BASE}/conversations/{conversation.pk}/messages", {"content": "Hi!"}, format="json")
        assert response.status_code == 200, response.json()
    data = started(api, fans)
    drain(clock, until=START + timedelta(hours=20))
    assert statuses(data["id"]) == ["pending", "pending", "pending", "sent"]
    detail = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]
    assert detail["status"] == "running"
    estimate = parse_datetime(detail["estimatedCompletionAt"])
    assert estimate is not None
    assert START + timedelta(hours=24) <= estimate <= START + timedelta(hours=36)
    drain(clock)  # the clock moves on: the window opens and the rest goes, with no one touching anything
    assert statuses(data["id"]) == ["sent"] * 4
    assert Campaign.objects.get(pk=data["id"]).status == "completed"
    campaign_dms = [dm for dm in sandbox.dms(senderId=shop["id"]) if dm["text"] != "Hi!"]
    assert len(campaign_dms) == 4
    assert str(parse_datetime(campaign_dms[1]["createdAt"])) >= str(START + timedelta(hours=24))


def test_the_campaign_daily_limit_is_kept_too(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 3
    data = started(api, fans)
    drain(clock, until=START + timedelta(hours=20))
    assert statuses(data["id"]).count("sent") == 3


def test_an_x_429_waits_for_the_reset_and_sends_once(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=429, times=1)
    data = started(api, fans)
    sender_step()
    assert statuses(data["id"]).count("sent") == 0
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert len(sandbox.dms(senderId=shop["id"])) == 4


# --- scheduling -----------------------------------------------------------------------------------------------------


def test_a_future_start_is_scheduled_and_fired_at_its_time(api, sandbox, shop, fans, clock, settings):
    from django_q.models import Schedule

    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    start_at = START + timedelta(hours=3)
    data = started(api, fans, schedule={"startAt": start_at.isoformat()})
    assert data["status"] == "scheduled"
    assert parse_datetime(data["nextRunAt"]) == start_at
    one_off = Schedule.objects.get(name=f"campaign:{data['id']}")
    assert one_off.next_run == start_at and one_off.func == "campaigns.tasks.fire_campaign"
    sender_step()
    assert not Delivery.objects.filter(campaign_id=data["id"]).exists()
    clock.move_to(start_at + timedelta(seconds=1))
    from campaigns.tasks import fire_campaign

    assert fire_campaign(data["id"]) == "fired"
    assert fire_campaign(data["id"]) == "not due or not scheduled"  # the sweep firing it too changes nothing
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert Campaign.objects.get(pk=data["id"]).status == "completed"


def test_updating_a_scheduled_campaign_moves_its_schedule(api, fans, clock):
    from django_q.models import Schedule

    data = started(api, fans, schedule={"startAt": (START + timedelta(hours=3)).isoformat()})
    later = START + timedelta(days=2)
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"startAt": later.isoformat()}}, format="json")
    assert response.status_code == 200, response.json()
    assert Schedule.objects.get(name=f"campaign:{data['id']}").next_run == later
    response = api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"startAt": None}}, format="json")
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "schedule.startAt"


def test_end_at_stops_sending_and_skips_the_rest_as_expired(api, sandbox, shop, fans, clock, settings):
    sandbox.limits(dm15m=3)  # one DM per 300 s
    data = started(api, fans, schedule={"endAt": (START + timedelta(minutes=7)).isoformat()})
    drain(clock)
    assert statuses(data["id"]) == ["sent", "sent", "skipped", "skipped"]
    assert set(Delivery.objects.filter(campaign_id=data["id"], status="skipped").values_list("reason", flat=True)) == {
        "expired"
    }
    assert Campaign.objects.get(pk=data["id"]).status == "completed"
    assert len(sandbox.dms(senderId=shop["id"])) == 2


def test_a_daily_recurrence_sends_each_occurrence_with_its_own_run(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    recurrence = {"frequency": "daily", "interval": 1, "until": (START + timedelta(days=2)).date().isoformat()}
    data = started(api, fans, schedule={"startAt": None, "recurrence": recurrence})
    drain(clock, until=START + timedelta(hours=1))
    campaign = Campaign.objects.get(pk=data["id"])
    assert campaign.status == "scheduled"  # between occurrences
    first = campaign.started_at
    assert first is not None and campaign.next_run_at == first + timedelta(days=1)
    for day in (1, 2):
        clock.move_to(first + timedelta(days=day, seconds=1))
        drain(clock, until=first + timedelta(days=day, hours=1))
    assert CampaignRun.objects.filter(campaign_id=data["id"]).count() == 3
    assert Campaign.objects.get(pk=data["id"]).status == "completed"
    assert len(sandbox.dms(senderId=shop["id"])) == 12
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert metrics["totalSent"] == 12 and metrics["delivered"] == 12
    assert [(r["run"], r["delivered"]) for r in metrics["runs"]] == [(1, 4), (2, 4), (3, 4)]
    one = api.get(f"{BASE}/campaigns/{data['id']}/metrics?run=2").json()["data"]
    assert one["delivered"] == 4


# --- pause and resume -----------------------------------------------------------------------------------------------


def test_a_paused_campaign_sends_nothing_and_resume_continues_where_it_stopped(
    api, sandbox, shop, fans, clock, settings
):
    settings.MKTX_X_DM_DAILY_LIMIT = 480
    data = started(api, fans)
    sender_step()
    assert statuses(data["id"]).count("sent") == 1
    act(api, data["id"], "pause")
    clock.shift(timedelta(hours=2))
    for _ in range(3):
        sender_step()
    assert statuses(data["id"]).count("sent") == 1
    assert act(api, data["id"], "resume").status_code == 200
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert len(sandbox.dms(senderId=shop["id"])) == 4


# --- failures -------------------------------------------------------------------------------------------------------


def test_a_403_is_final_with_xs_reason(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=403, times=1, code=226)  # "automated"
    data = started(api, fans)
    drain(clock)
    failed = Delivery.objects.get(campaign_id=data["id"], status="failed")
    assert failed.reason == "x_forbidden" and failed.attempts == 1 and failed.error_detail
    assert statuses(data["id"]).count("sent") == 3
    assert len(sandbox.dms(senderId=shop["id"])) == 3
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert (metrics["totalSent"], metrics["delivered"], metrics["failed"]) == (4, 3, 1)
    assert metrics["deliveryRate"] == 0.75


def test_5xx_is_retried_three_times_then_failed(api, sandbox, shop, crowd, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    contact_tags_add(contact=crowd[0]["contact"], tags=["solo"])
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=3)
    data = started(api, segment(api, "Solo", "solo"))
    drain(clock)
    failed = Delivery.objects.get(campaign_id=data["id"])
    # three tries, then one more turn that looks at X's DM events (none had reached X) before failing it
    assert (failed.status, failed.reason, failed.failures, failed.attempts) == ("failed", "x_error", 3, 4)
    assert sandbox.dms(senderId=shop["id"]) == []
    times = sorted(Message.objects.filter(origin="campaign").values_list("created_at", flat=True))
    assert len(times) == 3
    assert [(b - a).total_seconds() >= 30 for a, b in itertools.pairwise(times)] == [True, True]


def test_a_third_5xx_after_x_sent_the_dm_is_sent_not_failed(api, sandbox, shop, crowd, clock, settings):
    # found by bench/chaos.py x-faults: the third try was answered 503 after X had sent the DM, and was failed
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    contact_tags_add(contact=crowd[0]["contact"], tags=["solo"])
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=2)
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1, afterSend=True)
    data = started(api, segment(api, "Solo", "solo"))
    drain(clock)
    delivery = Delivery.objects.get(campaign_id=data["id"])
    (dm,) = sandbox.dms(senderId=shop["id"])
    assert (delivery.status, delivery.dm_event_id, delivery.failures) == ("sent", dm["id"], 3)
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert (metrics["totalSent"], metrics["failed"]) == (1, 0)


def test_a_try_whose_outcome_x_never_tells_ends_unclear_without_a_resend(api, sandbox, shop, crowd, clock, settings):
    # a retry looks at X's DM events first; with those down it looks again every 30 s, and gives up after 20
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    contact_tags_add(contact=crowd[0]["contact"], tags=["solo"])
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    sandbox.fault(method="GET", pathPrefix="/2/dm_conversations", status=503, times=1000)  # the DM events, down
    data = started(api, segment(api, "Solo", "solo"))
    drain(clock)
    delivery = Delivery.objects.get(campaign_id=data["id"])
    assert (delivery.status, delivery.reason, delivery.failures, delivery.attempts) == ("failed", "x_unclear", 1, 22)
    assert Message.objects.filter(origin="campaign").count() == 1  # looked at X again and again, never sent again


def test_a_retry_whose_look_at_x_is_rate_limited_waits_for_the_reset(api, sandbox, shop, crowd, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    contact_tags_add(contact=crowd[0]["contact"], tags=["solo"])
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1)
    sandbox.fault(method="GET", pathPrefix="/2/dm_conversations", status=429, times=1, resetSeconds=600)
    data = started(api, segment(api, "Solo", "solo"))
    drain(clock)
    delivery = Delivery.objects.get(campaign_id=data["id"])
    assert (delivery.status, delivery.attempts) == ("sent", 3)  # tried, looked (429), looked after the reset, sent
    assert len(sandbox.dms(senderId=shop["id"])) == 1
    first, second = sorted(Message.objects.filter(origin="campaign").values_list("created_at", flat=True))
    assert (second - first).total_seconds() >= 600


def test_a_5xx_then_success_is_sent_once(api, sandbox, shop, crowd, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    contact_tags_add(contact=crowd[0]["contact"], tags=["solo"])
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=1, afterSend=True)
    data = started(api, segment(api, "Solo", "solo"))
    drain(clock)
    delivery = Delivery.objects.get(campaign_id=data["id"])
    (dm,) = sandbox.dms(senderId=shop["id"])  # X had sent it despite the 503: found at X, not sent again
    assert (delivery.status, delivery.dm_event_id) == ("sent", dm["id"])


def test_a_timeout_after_x_sent_the_dm_is_not_sent_twice(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.X_API_READ_TIMEOUT = 0.5
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1, afterSend=True, times=1)
    data = started(api, fans)
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    dms = sandbox.dms(senderId=shop["id"])
    assert len(dms) == 4 and len({dm["recipientId"] for dm in dms}) == 4
    retried = Delivery.objects.get(campaign_id=data["id"], attempts=2)
    assert retried.dm_event_id in {dm["id"] for dm in dms}


def test_a_timeout_before_x_sent_anything_is_retried_and_sent_once(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    settings.X_API_READ_TIMEOUT = 0.5
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", mode="timeout", seconds=1, times=1)
    data = started(api, fans)
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert len(sandbox.dms(senderId=shop["id"])) == 4


class Crash(BaseException):
    """The worker process dying: nothing after this point runs."""


@pytest.mark.parametrize("moment", ["after_x_answered", "before_x_was_called"])
def test_a_worker_killed_mid_send_loses_no_one_and_messages_no_one_twice(
    api, sandbox, shop, fans, clock, settings, monkeypatch, moment
):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    data = started(api, fans)
    original_send = XClient.send_dm
    calls = {"n": 0}

    def dying_send(self, participant_id, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 and moment == "before_x_was_called":
            raise Crash
        sent = original_send(self, participant_id, **kwargs)
        if calls["n"] == 2:
            raise Crash  # X has the DM; the worker never records it
        return sent

    monkeypatch.setattr(XClient, "send_dm", dying_send)
    sender_step()
    clock.shift(timedelta(seconds=65))  # X's 15 DMs per 15 minutes: the next slot
    with pytest.raises(Crash):
        sender_step()
    stuck = Delivery.objects.get(campaign_id=data["id"], status="sending")
    monkeypatch.setattr(XClient, "send_dm", original_send)

    clock.shift(timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS + 1))  # the lease expires
    drain(clock)

    assert statuses(data["id"]) == ["sent"] * 4
    dms = sandbox.dms(senderId=shop["id"])
    assert sorted(dm["recipientId"] for dm in dms) == sorted(
        Contact.objects.filter(campaign_deliveries__campaign_id=data["id"]).values_list("twitter_user_id", flat=True)
    )
    stuck.refresh_from_db()
    assert stuck.dm_event_id in {dm["id"] for dm in dms}


# --- consent and accounts at send time ------------------------------------------------------------------------------


def test_a_contact_who_opted_out_after_the_start_is_skipped(api, sandbox, shop, crowd, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    data = started(api, fans)
    contact_consent_set(contact=crowd[2]["contact"], action=ConsentAction.OPT_OUT, keyword="STOP")
    drain(clock)
    skipped = Delivery.objects.get(campaign_id=data["id"], status="skipped")
    assert skipped.reason == "opted_out" and skipped.contact_id == crowd[2]["contact"].pk
    assert crowd[2]["id"] not in {dm["recipientId"] for dm in sandbox.dms(senderId=shop["id"])}


def test_an_account_that_can_no_longer_send_skips_its_deliveries(api, sandbox, shop, fans, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 480
    data = started(api, fans)
    sender_step()
    shop["account"].status = "revoked"
    shop["account"].save()
    drain(clock)
    assert statuses(data["id"]) == ["sent", "skipped", "skipped", "skipped"]
    reasons = set(Delivery.objects.filter(campaign_id=data["id"], status="skipped").values_list("reason", flat=True))
    assert reasons == {"account_inactive"}
    assert Campaign.objects.get(pk=data["id"]).status == "completed"


def test_each_recipient_is_messaged_from_the_account_the_contact_belongs_to(api, sandbox, shop, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    second = connect(api, sandbox, "goodgo_outlet")
    a = customer(sandbox, shop, "shop_fan", "fans")
    b = customer(sandbox, second, "outlet_fan", "fans")
    data = started(api, segment(api, "Fans", "fans"))
    drain(clock)
    assert statuses(data["id"]) == ["sent", "sent"]
    assert [dm["recipientId"] for dm in sandbox.dms(senderId=shop["id"])] == [a["id"]]
    assert [dm["recipientId"] for dm in sandbox.dms(senderId=second["id"])] == [b["id"]]


def test_a_scheduled_campaign_that_can_no_longer_be_sent_fails_with_the_reason(api, sandbox, shop, crowd, clock):
    from campaigns.tasks import fire_campaign

    for person in crowd:
        Contact.objects.filter(pk=person["contact"].pk).update(attributes={"tier": "gold"})
    tpl = template(api, content="Hi {{contact.attributes.tier}} member", variables=())
    data = create(api, [segment(api, "Fans", "fans")], tpl, variables={})
    start_at = START + timedelta(hours=1)
    api.put(f"{BASE}/campaigns/{data['id']}", {"schedule": {"startAt": start_at.isoformat()}}, format="json")
    assert act(api, data["id"], "start").json()["data"]["status"] == "scheduled"
    customer(sandbox, shop, "newcomer", "fans")  # joins the segment without the attribute the template needs
    clock.move_to(start_at + timedelta(seconds=1))
    assert fire_campaign(data["id"]) == "not due or not scheduled"
    detail = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]
    assert detail["status"] == "failed"
    assert "contact.attributes.tier" in detail["statusReason"]
    assert not Delivery.objects.filter(campaign_id=data["id"]).exists()
    assert act(api, data["id"], "start").status_code == 400


@pytest.mark.parametrize("state", ["draft", "scheduled", "paused"])
def test_cancel_from_each_unfinished_state(api, sandbox, shop, fans, clock, state, settings):
    from django_q.models import Schedule

    settings.MKTX_X_DM_DAILY_LIMIT = 480
    schedule = {"startAt": (START + timedelta(hours=1)).isoformat()} if state == "scheduled" else {}
    data = create(api, [fans], template(api), schedule=schedule)
    if state != "draft":
        act(api, data["id"], "start")
    if state == "paused":
        sender_step()
        act(api, data["id"], "pause")
    response = act(api, data["id"], "cancel")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "cancelled"
    assert not Schedule.objects.filter(name=f"campaign:{data['id']}").exists()
    clock.shift(timedelta(hours=2))
    drain(clock)
    sent = 1 if state == "paused" else 0
    assert len(sandbox.dms(senderId=shop["id"])) == sent
    assert statuses(data["id"]).count("skipped") == (3 if state == "paused" else 0)


def test_the_estimate_of_a_campaign_outside_its_send_window_is_after_the_next_opening(api, sandbox, shop, fans, clock):
    # given a campaign whose window (00:00-00:01 UTC) is closed at its start (09:00)
    data = started(api, fans, schedule={"sendWindow": {"start": "00:00", "end": "00:01"}})
    # when the sender runs
    sender_step()
    # then nothing went, it waits running, and its estimate is past the next opening, not minutes away
    detail = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]
    assert detail["status"] == "running" and sandbox.dms(senderId=shop["id"]) == []
    estimate = parse_datetime(detail["estimatedCompletionAt"])
    opening = datetime(2027, 3, 2, 0, 0, tzinfo=UTC)
    assert estimate is not None
    assert opening <= estimate < opening + timedelta(minutes=1), estimate


def test_a_follower_never_talked_to_gets_the_campaign_in_a_new_conversation(api, sandbox, shop, clock, settings):
    from contacts.models import Conversation
    from contacts.services.contacts import XProfile, contact_follow_set

    # given a contact made by a follow event only: no conversation yet
    user = sandbox.user("new_follower", "New Follower")
    follower = contact_follow_set(
        account=shop["account"],
        profile=XProfile(id=user["id"], username="new_follower", name="New Follower"),
        following=True,
        at=START,
    )
    assert follower is not None and not Conversation.objects.filter(contact=follower).exists()
    contact_tags_add(contact=follower, tags=["followers"])
    # when a campaign is sent to the followers
    data = started(api, segment(api, "Followers", "followers"))
    drain(clock)
    # then the follower got it, recorded in a conversation opened for it
    assert statuses(data["id"]) == ["sent"]
    assert [dm["recipientId"] for dm in sandbox.dms(senderId=shop["id"])] == [user["id"]]
    assert Conversation.objects.get(contact=follower).messages.filter(origin="campaign").count() == 1


def test_an_x_outage_makes_the_account_back_off_instead_of_burning_every_recipients_tries(
    api, sandbox, shop, fans, clock, settings
):
    sandbox.fault(method="POST", pathPrefix="/2/dm_conversations", status=503, times=2)
    data = started(api, fans)
    sender_step()
    clock.shift(timedelta(seconds=5))
    sender_step()  # within the backoff: nothing is tried
    assert Message.objects.filter(origin="campaign").count() == 1
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4  # the outage cost tries of one delivery, not the audience's
    assert len(sandbox.dms(senderId=shop["id"])) == 4
