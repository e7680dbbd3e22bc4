"""X's DM event lookup as X answers it (issue 16): only the fields asked for, pages of `max_results` with
`meta.next_token`, 30 days back; and the service's reconciliation walking every page back to the unclear send."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from contacts.services.message_states import message_found_at_x
from tests.campaign_helpers import FreshTokenClient, connect, customer
from tests.conftest import CONSUMER_KEY, CONSUMER_SECRET
from tests.test_quota import conversation_of, unclear_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(owner, sandbox, clock):
    sandbox.limits(dm15m=1000, dm24h=100_000)
    return connect(FreshTokenClient(owner), sandbox)


@pytest.fixture
def fan(sandbox, shop):
    return conversation_of(customer(sandbox, shop, "fan_pages"))


def lookup(sandbox: Any, shop: dict[str, Any], other_id: str, **params: Any) -> requests.Response:
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, shop["oauthToken"], shop["oauthTokenSecret"])
    url = f"{sandbox.url}/2/dm_conversations/with/{other_id}/dm_events"
    return requests.get(url, params=params, auth=auth, timeout=10)


def test_only_the_fields_asked_for_and_pages_of_max_results(sandbox, shop, fan):
    other = fan.contact.twitter_user_id
    for i in range(5):
        sandbox.dm(other, shop["id"], f"message {i}")
    bare = lookup(sandbox, shop, other).json()
    assert [set(event) for event in bare["data"]] == [{"id", "event_type", "text"}] * 5
    assert bare["meta"] == {"result_count": 5}
    asked = lookup(sandbox, shop, other, **{"dm_event.fields": "created_at,sender_id,participant_ids"}).json()
    assert set(asked["data"][0]) == {"id", "event_type", "text", "created_at", "sender_id", "participant_ids"}
    seen, token = [], None
    while True:
        params = {"max_results": 2, **({"pagination_token": token} if token else {})}
        page = lookup(sandbox, shop, other, **params).json()
        seen += [event["text"] for event in page.get("data", [])]
        token = page["meta"].get("next_token")
        if not token:
            break
    assert seen == [f"message {i}" for i in reversed(range(5))]  # newest first, each once
    for params, word in (
        ({"max_results": 0}, "max_results"),
        ({"max_results": 101}, "max_results"),
        ({"dm_event.fields": "created_at,mood"}, "dm_event.fields"),
        ({"pagination_token": "not-a-token!"}, "pagination_token"),
    ):
        refused = lookup(sandbox, shop, other, **params)
        assert refused.status_code == 400 and word in refused.json()["detail"]


def test_the_lookup_reaches_back_30_days(sandbox, shop, fan, clock):
    other = fan.contact.twitter_user_id
    sandbox.dm(other, shop["id"], "an old one")
    clock.shift(timedelta(days=31))
    sandbox.dm(other, shop["id"], "a new one")
    assert [event["text"] for event in lookup(sandbox, shop, other).json()["data"]] == ["a new one"]


def test_reconciliation_walks_every_page_back_to_the_unclear_send(sandbox, shop, fan, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fan, "Your code: SPRING10 https://shop.example/s", x_sent_it=True)
    (ours,) = sandbox.dms(senderId=shop["id"])
    for i in range(120):  # a busy conversation since: ours is on the second page of 100
        sandbox.dm(fan.contact.twitter_user_id, shop["id"], f"and {i}")
    assert message_found_at_x(message=message) is True
    message.refresh_from_db()
    assert (message.status, message.twitter_message_id) == ("sent", ours["id"])


def test_a_lookup_that_cannot_reach_back_far_enough_says_so_and_nothing_is_resent(sandbox, shop, fan, settings):
    from mktx.xapi import XError, client

    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fan, "Your code: SPRING10", x_sent_it=False)
    for i in range(120):
        sandbox.dm(fan.contact.twitter_user_id, shop["id"], f"and {i}")
    settings_pages = client.DM_EVENT_PAGES
    try:
        client.DM_EVENT_PAGES = 1  # one page of 100 holds only what came after the send
        with pytest.raises(XError, match="pages of DM events"):
            message_found_at_x(message=message)
    finally:
        client.DM_EVENT_PAGES = settings_pages
    message.refresh_from_db()
    assert message.status == "failed"  # unclear still: the caller looks again later instead of sending blind
