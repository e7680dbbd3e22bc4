"""Not everyone accepts DMs (issue 16): a sandbox user who takes DMs only from accounts they follow answers X's 403
code 349 to anyone else, unless they have written to them; a campaign delivery to them fails for good with the
reason `recipient_not_accepting_dms` while the rest of the campaign goes on, and a flow step says the same."""

from __future__ import annotations

import pytest
import requests

from automation.models import ExecutionStatus
from automation.triggers import contacts_enroll
from campaigns.models import Delivery
from mktx.accounts.services import account_client
from mktx.xapi import XForbidden
from tests.campaign_helpers import FreshTokenClient, connect, customer, drain
from tests.flow_helpers import active_flow, node, only_execution, run_due, step_summary
from tests.test_campaigns import BASE, act, create, segment, template

pytestmark = pytest.mark.django_db
REFUSED = "recipient_not_accepting_dms"


def settings_of(sandbox, user_id: str, policy: str) -> requests.Response:
    return requests.post(f"{sandbox.url}/_sandbox/users/{user_id}/settings", json={"dmPolicy": policy}, timeout=10)


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)


@pytest.fixture
def shop(api, sandbox, clock):
    return connect(api, sandbox)


def test_a_following_only_user_refuses_dms_until_they_follow_or_write(sandbox, shop):
    made = requests.post(
        f"{sandbox.url}/_sandbox/users", json={"username": "picky", "dmPolicy": "following"}, timeout=10
    ).json()
    assert made["dmPolicy"] == "following"
    client = account_client(shop["account"])
    with pytest.raises(XForbidden) as refused:
        client.send_dm(made["id"], text="hello")
    assert (refused.value.status, refused.value.code, refused.value.reason) == (403, 349, "recipient_not_accepting_dms")
    assert "cannot send messages to this user" in refused.value.message
    sandbox.follow(made["id"], shop["id"])  # they follow the shop: DMs from it are welcome
    assert client.send_dm(made["id"], text="hello").dm_event_id
    other = sandbox.user("picky_two")
    assert settings_of(sandbox, other["id"], "following").json() == {"id": other["id"], "dmPolicy": "following"}
    with pytest.raises(XForbidden):
        client.send_dm(other["id"], text="hello")
    sandbox.dm(other["id"], shop["id"], "hi shop")  # they wrote first: the shop may answer
    assert client.send_dm(other["id"], text="hello").dm_event_id
    bad = settings_of(sandbox, other["id"], "friends")
    assert bad.status_code == 400 and "dmPolicy" in bad.text
    assert settings_of(sandbox, "999", "everyone").status_code == 400  # no such user


def test_a_campaign_fails_only_the_recipient_who_takes_no_dms(api, sandbox, shop, clock, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    fans = [customer(sandbox, shop, f"fan_{i}", "fans") for i in range(3)]
    settings_of(sandbox, fans[1]["id"], "following")  # they DMed the shop in the service's records, not at X
    data = create(api, [segment(api, "Fans", "fans")], template(api))
    assert act(api, data["id"], "start").status_code == 200
    drain(clock)
    refused = Delivery.objects.get(campaign_id=data["id"], status="failed")
    assert (refused.contact_id, refused.reason, refused.attempts) == (
        fans[1]["contact"].pk,
        "recipient_not_accepting_dms",
        1,
    )
    assert sorted(Delivery.objects.filter(campaign_id=data["id"]).values_list("status", flat=True)) == [
        "failed",
        "sent",
        "sent",
    ]
    listed = api.get(f"{BASE}/campaigns/{data['id']}/deliveries", {"status": "failed"}).json()["data"]
    assert [(d["contactId"], d["reason"]) for d in listed] == [
        (str(fans[1]["contact"].pk), "recipient_not_accepting_dms")
    ]
    metrics = api.get(f"{BASE}/campaigns/{data['id']}/metrics").json()["data"]
    assert (metrics["totalSent"], metrics["delivered"], metrics["failed"]) == (3, 2, 1)
    assert len(sandbox.dms(senderId=shop["id"])) == 2
    drain(clock)  # never tried again
    assert Delivery.objects.get(pk=refused.pk).attempts == 1 and len(sandbox.dms(senderId=shop["id"])) == 2


def test_a_flow_step_says_the_recipient_takes_no_dms(merchant, sandbox, shop, jane):
    settings_of(sandbox, jane["id"], "following")
    flow = active_flow(merchant, "manual", [node("s", "send_message", content="Hi")])
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    execution = only_execution(flow)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error.startswith("recipient_not_accepting_dms")
    assert step_summary(execution) == [("s", "failed")]


def test_the_refusal_is_known_by_its_words_when_x_gives_no_code():
    assert XForbidden("You cannot send messages to this user.", status=403).reason == REFUSED
    assert XForbidden("This request looks like it might be automated.", status=403, code=226).reason == "x_forbidden"
