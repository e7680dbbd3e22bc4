"""A campaign end to end over real HTTP both ways, as a merchant would run it: customers DM the shop in the X
sandbox, the merchant segments and sends through the API, the sandbox receives the DMs, and the metrics move as
the customers read (a read receipt webhook), click (the tracked link on the live server) and reply (a DM)."""

from __future__ import annotations

import re

import pytest
import requests

from tests.test_inbox_e2e import Inbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inbox(live_server, settings, sandbox, owner) -> Inbox:
    settings.MKTX_PUBLIC_URL = live_server.url
    settings.MKTX_X_DM_DAILY_LIMIT = 10_000_000
    settings.MKTX_CAMPAIGN_DAILY_LIMIT = 10_000_000
    sandbox.limits(dm15m=100_000, dm24h=100_000)
    return Inbox(live_server.url, sandbox, owner)


def test_a_campaign_is_delivered_and_its_metrics_move_as_customers_read_click_and_reply(inbox, live_server):
    customers = [inbox.sandbox.user(f"buyer_{i}", f"Buyer {i}") for i in range(3)]
    for person in customers:
        inbox.sandbox.dm(person["id"], inbox.shop["id"], "Do you ship to Lisbon?")
    contacts = inbox.api("GET", "/contacts").json()["data"]
    for contact in contacts:
        inbox.api("POST", f"/contacts/{contact['id']}/tags", json={"tags": ["lisbon"]})
    segment = inbox.api(
        "POST", "/segments", json={"name": "Lisbon", "conditions": [{"field": "tags", "operator": "contains",
                                                                     "value": "lisbon"}]}
    ).json()["data"]  # fmt: skip
    assert segment["contactCount"] == 3
    template = inbox.api(
        "POST",
        "/templates",
        json={"name": "Ship", "type": "text", "content": "Hi {{contact.displayName}}! We ship: https://goodgo.example/ship",
              "variables": []},
    ).json()["data"]  # fmt: skip
    campaign = inbox.api(
        "POST",
        "/campaigns",
        json={"name": "Lisbon", "type": "promotional", "templateId": template["id"], "segmentIds": [segment["id"]],
              "schedule": {"startAt": None, "endAt": None, "recurrence": None}},
    ).json()["data"]  # fmt: skip

    started = inbox.api("POST", f"/campaigns/{campaign['id']}/start")
    assert started.status_code == 200, started.text
    for _ in range(20):  # the sender runs as a task per kick; the sweep would wake it too
        from campaigns.lanes import sender_step

        if sender_step() is None:
            break
        import time

        time.sleep(0.05)
    inbox.settle()

    detail = inbox.api("GET", f"/campaigns/{campaign['id']}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["metrics"]["delivered"] == 3
    received = {p["id"]: inbox.dms_to(p) for p in customers}
    assert all(len(texts) == 1 and texts[0].startswith(f"Hi Buyer {i}! We ship: {live_server.url}/l/")
               for i, texts in enumerate(received.values()))  # fmt: skip

    # buyer 0 reads, buyer 1 clicks, buyer 2 replies
    dm_ids = {dm["recipientId"]: dm["id"] for dm in inbox.sandbox.dms(senderId=inbox.shop["id"])}
    inbox.sandbox.read(customers[0]["id"], inbox.shop["id"], dm_ids[customers[0]["id"]])
    found = re.search(r"/l/(\S+)", received[customers[1]["id"]][0])
    assert found is not None
    # X shows the tracked link wrapped: the customer opens the t.co link, which leads to it (the sandbox answers
    # for t.co), and the click counts
    (shown,) = inbox.sandbox.dms(senderId=inbox.shop["id"], recipientId=customers[1]["id"])
    (wrapped,) = re.findall(r"https://t\.co/(\w{10})", shown["xText"])
    tco = requests.get(f"{inbox.sandbox.url}/_sandbox/t.co/{wrapped}", allow_redirects=False, timeout=10)
    assert tco.status_code == 301 and tco.headers["Location"] == live_server.url + found.group(0)
    click = requests.get(tco.headers["Location"], allow_redirects=False, timeout=10)
    assert click.status_code == 302 and click.headers["Location"] == "https://goodgo.example/ship"
    inbox.sandbox.dm(customers[2]["id"], inbox.shop["id"], "Great, ordering now")

    metrics = inbox.api("GET", f"/campaigns/{campaign['id']}/metrics").json()["data"]
    assert {k: metrics[k] for k in ("totalSent", "delivered", "opened", "clicked", "replied", "failed")} == {
        "totalSent": 3,
        "delivered": 3,
        "opened": 1,
        "clicked": 1,
        "replied": 1,
        "failed": 0,
    }
    assert metrics["openRate"] == 0.33 and metrics["deliveryRate"] == 1.0
    # the echoes of the campaign's DMs did not become extra messages
    conversation = inbox.api("GET", "/conversations", params={"contactId": contacts[0]["id"]}).json()["data"][0]
    messages = inbox.api("GET", f"/conversations/{conversation['id']}").json()["data"]["messages"]
    assert [m["direction"] for m in messages].count("outbound") == 1
