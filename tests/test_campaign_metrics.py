"""Campaign metrics, tracked links, test sends and the deliveries list."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns.attribution import deliveries_opened, deliveries_replied
from campaigns.models import Delivery, TrackedLink
from contacts.models import Message
from contacts.services.contacts import XProfile, contact_erase
from contacts.services.inbound import dm_record, read_receipt_record
from tests.campaign_helpers import connect, customer, drain
from tests.factories import MerchantFactory, UserFactory
from tests.test_campaigns import BASE, act, create, segment, template

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast(settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 10_000_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 10_000_000


@pytest.fixture
def shop(api, sandbox):
    sandbox.limits(dm15m=100_000, dm24h=100_000)  # sends a few milliseconds apart: the clock stays about now
    return connect(api, sandbox)


@pytest.fixture
def crowd(sandbox, shop):
    return [customer(sandbox, shop, f"fan_{i}", "fans") for i in range(4)]


def run_campaign(api, content="Sale! https://shop.example/sale?utm=x and https://shop.example/faq.", **extra):
    data = create(api, [segment(api, "Fans", "fans")], template(api, content=content, variables=()), **extra)
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        assert act(api, data["id"], "start").status_code == 200
        drain(traveller)
    return data


def test_urls_become_one_tracked_link_per_delivery_and_url(api, sandbox, shop, crowd, settings):
    data = run_campaign(api)
    dms = sandbox.dms(senderId=shop["id"])
    assert len(dms) == 4
    links = TrackedLink.objects.filter(delivery__campaign_id=data["id"])
    assert links.count() == 8
    for dm in dms:
        delivery = Delivery.objects.get(dm_event_id=dm["id"])
        sale, faq = (delivery.links.get(url=u) for u in ("https://shop.example/sale?utm=x", "https://shop.example/faq"))
        base = settings.MKTX_PUBLIC_URL
        assert dm["text"] == f"Sale! {base}/l/{sale.token} and {base}/l/{faq.token}."
    assert len({link.token for link in links}) == 8


def test_a_click_is_recorded_once_per_delivery_and_redirects(api, client, crowd):
    data = run_campaign(api)
    link = TrackedLink.objects.filter(delivery__campaign_id=data["id"], url="https://shop.example/sale?utm=x")[0]
    response = client.get(f"/l/{link.token}")
    assert response.status_code == 302 and response["Location"] == "https://shop.example/sale?utm=x"
    first = Delivery.objects.get(pk=link.delivery_id).clicked_at
    client.get(f"/l/{link.token}")
    link.refresh_from_db()
    assert link.clicks == 2 and Delivery.objects.get(pk=link.delivery_id).clicked_at == first
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert metrics["clicked"] == 1 and metrics["clickRate"] == 0.25


def test_an_unknown_link_is_404(client):
    response = client.get("/l/doesnotexist")
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_every_metric_and_its_rates_and_timeline(api, sandbox, shop, crowd):
    data = run_campaign(api)
    deliveries = {d.contact_id: d for d in Delivery.objects.filter(campaign_id=data["id"])}
    a, b, _c, _d = (deliveries[p["contact"].pk] for p in crowd)
    # a reads (a read receipt through the inbound path), b clicks, c replies, d does nothing
    read_receipt_record(account=shop["account"], reader_id=crowd[0]["id"], last_read_event_id=a.dm_event_id,
                        at=timezone.now())  # fmt: skip
    deliveries_opened(account=shop["account"], reader_id=crowd[0]["id"], at=timezone.now())
    link = b.links.all()[0]
    api.get(f"/l/{link.token}")
    reply = dm_record(
        account=shop["account"],
        x_event_id="930000000000000001",
        sender_id=crowd[2]["id"],
        recipient_id=shop["id"],
        text="Is it still on?",
        sent_at=timezone.now(),
        profiles={crowd[2]["id"]: XProfile(id=crowd[2]["id"], username="fan_2", name="Fan 2")},
    )
    assert reply is not None
    deliveries_replied(message=reply.message)
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert {k: metrics[k] for k in ("totalSent", "delivered", "opened", "clicked", "replied", "failed")} == {
        "totalSent": 4,
        "delivered": 4,
        "opened": 1,
        "clicked": 1,
        "replied": 1,
        "failed": 0,
    }
    assert (metrics["openRate"], metrics["clickRate"], metrics["replyRate"], metrics["deliveryRate"]) == (
        0.25,
        0.25,
        0.25,
        1.0,
    )
    (bucket,) = metrics["timeline"]
    assert bucket["timestamp"].endswith(":00:00Z")
    assert {k: bucket[k] for k in ("sent", "delivered", "opened", "clicked", "replied", "failed")} == {
        "sent": 4,
        "delivered": 4,
        "opened": 1,
        "clicked": 1,
        "replied": 1,
        "failed": 0,
    }
    summary = api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]["metrics"]
    assert summary == {"totalSent": 4, "delivered": 4, "opened": 1, "clicked": 1, "replied": 1, "failed": 0}


def test_a_reply_after_the_attribution_window_is_not_counted(api, shop, crowd, settings):
    data = run_campaign(api)
    with time_machine.travel(timezone.now() + timedelta(hours=settings.MKTX_REPLY_ATTRIBUTION_HOURS + 1)):
        reply = dm_record(
            account=shop["account"],
            x_event_id="930000000000000002",
            sender_id=crowd[1]["id"],
            recipient_id=shop["id"],
            text="Late answer",
            sent_at=timezone.now(),
            profiles={crowd[1]["id"]: XProfile(id=crowd[1]["id"], username="fan_1", name="Fan 1")},
        )
        assert reply is not None
        assert deliveries_replied(message=reply.message) == 0
    assert api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]["replied"] == 0


def test_metrics_stay_right_after_a_recipient_is_erased(api, crowd):
    data = run_campaign(api)
    gone = Delivery.objects.get(campaign_id=data["id"], contact=crowd[0]["contact"])
    api.get(f"/l/{gone.links.all()[0].token}")
    before = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    contact_erase(contact=crowd[0]["contact"])
    gone.refresh_from_db()
    assert gone.contact_id is None and gone.message_id is None and gone.status == "sent"
    after = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert after == before
    listed = api.get(f"{BASE}/campaigns/{data['id']}/deliveries").json()["data"]
    assert sum(1 for row in listed if row["contactId"] is None) == 1


def test_the_deliveries_list_filters_by_status_and_reason(api, sandbox, crowd):
    from contacts.models import ConsentAction
    from contacts.services.consent import contact_consent_set

    contact_consent_set(contact=crowd[3]["contact"], action=ConsentAction.OPT_OUT, keyword="STOP")
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        act(api, data["id"], "start")
        drain(traveller)
    page = api.get(f"{BASE}/campaigns/{data['id']}/deliveries?take=2").json()
    assert page["pagination"]["total"] == 4 and len(page["data"]) == 2
    skipped = api.get(f"{BASE}/campaigns/{data['id']}/deliveries?status=skipped").json()["data"]
    assert [(row["contactId"], row["reason"]) for row in skipped] == [(str(crowd[3]["contact"].pk), "opted_out")]
    by_reason = api.get(f"{BASE}/campaigns/{data['id']}/deliveries?reason=opted_out").json()["data"]
    assert len(by_reason) == 1
    sent = api.get(f"{BASE}/campaigns/{data['id']}/deliveries?status=sent").json()["data"]
    assert len(sent) == 3 and all(row["dmEventId"] and row["sentAt"] for row in sent)
    assert api.get(f"{BASE}/campaigns/{data['id']}/deliveries?status=bogus").status_code == 400


def test_a_test_send_goes_at_once_marked_as_test_and_out_of_the_metrics(api, sandbox, shop, crowd):
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    response = api.post(
        f"{BASE}/campaigns/{data['id']}/test",
        {"contactIds": [str(crowd[0]["contact"].pk)], "variables": {"code": "TEST10"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    (result,) = response.json()["data"]["results"]
    assert result["status"] == "sent"
    (dm,) = sandbox.dms(senderId=shop["id"])
    assert dm["text"] == "Hi Fan 0, use TEST10"
    message = Message.objects.get(pk=result["messageId"])
    assert message.metadata == {"campaignId": data["id"], "test": True}
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert metrics["totalSent"] == 0 and metrics["delivered"] == 0
    assert api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]["status"] == "draft"


def test_a_test_send_to_another_merchants_contact_is_404(api, sandbox, crowd, client_for):
    other_owner = UserFactory.create(merchant=MerchantFactory.create())
    other_shop = connect(client_for(other_owner), sandbox, "other_shop")
    stranger = customer(sandbox, other_shop, "stranger")
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    response = api.post(
        f"{BASE}/campaigns/{data['id']}/test",
        {"contactIds": [str(crowd[0]["contact"].pk), str(stranger["contact"].pk)], "variables": {"code": "T"}},
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["details"]["field"] == "contactIds[1]"
    assert sandbox.dms(senderId=other_shop["id"]) == []
    assert api.post(f"{BASE}/campaigns/{data['id']}/test", {"contactIds": []}, format="json").status_code == 400


def test_a_test_send_with_a_placeholder_nothing_fills_is_400_and_sends_nothing(api, sandbox, shop, crowd):
    data = create(api, [segment(api, "Fans", "fans")], template(api), variables={})
    response = api.post(
        f"{BASE}/campaigns/{data['id']}/test",
        {"contactIds": [str(crowd[0]["contact"].pk), str(crowd[1]["contact"].pk)]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "variables.code"
    assert sandbox.dms(senderId=shop["id"]) == []


def test_another_merchants_campaign_is_404_on_every_endpoint(api, sandbox, crowd, client_for):
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    theirs = client_for(UserFactory.create(merchant=MerchantFactory.create()))
    base = f"{BASE}/campaigns/{data['id']}"
    assert theirs.get(f"{base}/metrics").status_code == 404
    assert theirs.get(f"{base}/deliveries").status_code == 404
    assert theirs.put(base, {"name": "Mine now"}, format="json").status_code == 404
    for verb in ("pause", "resume", "cancel"):
        assert theirs.post(f"{base}/{verb}", format="json").status_code == 404
    body = {"contactIds": [str(crowd[0]["contact"].pk)], "variables": {"code": "X"}}
    assert theirs.post(f"{base}/test", body, format="json").status_code == 404
    assert api.get(base).json()["data"]["name"] == "January Promotion"
    assert sandbox.dms() == []


def test_a_test_send_to_an_opted_out_contact_is_skipped(api, sandbox, shop, crowd):
    from contacts.models import ConsentAction
    from contacts.services.consent import contact_consent_set

    contact_consent_set(contact=crowd[0]["contact"], action=ConsentAction.OPT_OUT, keyword="STOP")
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    response = api.post(
        f"{BASE}/campaigns/{data['id']}/test",
        {"contactIds": [str(crowd[0]["contact"].pk)], "variables": {"code": "T"}},
        format="json",
    )
    assert response.status_code == 200
    (result,) = response.json()["data"]["results"]
    assert (result["status"], result["reason"]) == ("skipped", "opted_out")
    assert sandbox.dms(senderId=shop["id"]) == []


def test_a_card_whose_image_cannot_be_fetched_fails_its_deliveries_without_sending(api, sandbox, shop, crowd, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    card = {"imageUrl": "https://127.0.0.1:9/sale.png", "buttons": [{"label": "Shop", "url": "https://shop.example"}]}
    response = api.post(
        f"{BASE}/templates",
        {"name": "Card", "type": "card", "content": "Our sale", "variables": [], "card": card},
        format="json",
    )
    assert response.status_code == 200, response.json()
    data = create(api, [segment(api, "Fans", "fans")], response.json()["data"]["id"], variables={})
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        act(api, data["id"], "start")
        drain(traveller)
    rows = Delivery.objects.filter(campaign_id=data["id"]).values_list("status", "reason")
    assert set(rows) == {("failed", "rejected")}
    assert sandbox.dms(senderId=shop["id"]) == []
    assert api.get(f"{BASE}/campaigns/{data['id']}").json()["data"]["status"] == "completed"
