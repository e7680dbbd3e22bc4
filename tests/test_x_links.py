"""X wraps every URL in a DM as a t.co link (issue 16): the sandbox does it on every X surface, and the service keeps
DMs as written, knows its own echoes and its own unclear sends again with links in them."""

from __future__ import annotations

import pytest

from contacts.models import Message
from contacts.services.message_states import message_found_at_x
from mktx.accounts.services import account_client
from tests.campaign_helpers import connect, customer
from tests.live_helpers import api, texts
from tests.test_quota import conversation_of, dm, unclear_send
from xsandbox.links import wrap

pytestmark = pytest.mark.django_db
SALE = "Spring sale: https://shop.example/spring?c=1. Details at http://shop.example/faq)"


@pytest.fixture
def shop(api, sandbox):
    return connect(api, sandbox)


@pytest.fixture
def fans(sandbox, shop):
    return [conversation_of(customer(sandbox, shop, f"fan_{i}")) for i in range(2)]


def test_wrapping_gives_each_link_a_tco_code_and_its_entity():
    text, urls = wrap("see https://shop.example/a-very-long-path/with/more/parts?x=1, ok", "42")
    assert text.startswith("see https://t.co/") and text.endswith(", ok")
    (link,) = urls
    assert (
        len(link["url"]) == len("https://t.co/") + 10 and text[link["indices"][0] : link["indices"][1]] == link["url"]
    )
    assert link["expanded_url"] == "https://shop.example/a-very-long-path/with/more/parts?x=1"
    assert link["display_url"] == "shop.example/a-very-long-\u2026"
    # code points, not UTF-16 units or bytes, and one code per DM and link
    text, (first, second) = wrap("\U0001f600 https://a.example/1 and https://a.example/1", "43")
    assert text[first["indices"][0] : first["indices"][1]] == first["url"] and first["url"] != second["url"]
    assert wrap("no links here", "44") == ("no links here", [])


def test_the_sandbox_shows_both_forms_and_x_surfaces_only_the_wrapped_one(sandbox, shop, fans):
    message = dm(fans[0], "staff", SALE)
    (at_x,) = sandbox.dms(senderId=shop["id"])
    assert at_x["text"] == SALE and at_x["xText"] != SALE and at_x["xText"].count("https://t.co/") == 2
    expanded = [u["expanded_url"] for u in at_x["entities"]["urls"]]
    assert expanded == ["https://shop.example/spring?c=1", "http://shop.example/faq"]
    events = account_client(fans[0].account).dm_events(fans[0].contact.twitter_user_id)  # X's DM event lookup
    assert events[0]["text"] == at_x["xText"]
    message.refresh_from_db()
    assert message.content == SALE  # the service keeps what it wrote


def test_an_unclear_send_with_links_is_found_at_x_and_not_sent_again(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    message = unclear_send(sandbox, fans[0], SALE, x_sent_it=True)
    (at_x,) = sandbox.dms(senderId=shop["id"])
    assert "t.co" in at_x["xText"]  # what X's lookup answers: the wrapped text, without entities
    assert message_found_at_x(message=message) is True
    message.refresh_from_db()
    assert (message.status, message.twitter_message_id) == ("sent", at_x["id"])
    assert len(sandbox.dms(senderId=shop["id"])) == 1


def test_a_different_dm_at_x_is_not_taken_for_ours(sandbox, shop, fans, settings):
    settings.X_API_READ_TIMEOUT = 0.3
    sandbox.dm(shop["id"], fans[0].contact.twitter_user_id, "Spring sale: see the shop")  # from X's app, no link
    message = unclear_send(sandbox, fans[0], "Spring sale: https://shop.example/spring", x_sent_it=False)
    assert message_found_at_x(message=message) is False


@pytest.mark.django_db(transaction=True)
def test_over_real_http_a_customers_link_is_stored_expanded_and_our_echo_once(service, sandbox, live_shop, owner):
    jane = sandbox.user("jane_links", "Jane")
    sandbox.dm(jane["id"], live_shop["id"], "is this yours? https://other.example/item/7")
    stored = sandbox.wait_for(lambda: Message.objects.filter(direction="inbound").first())
    assert stored.content == "is this yours? https://other.example/item/7"
    assert stored.metadata["xText"].startswith("is this yours? https://t.co/")
    assert stored.metadata["entities"]["urls"][0]["expanded_url"] == "https://other.example/item/7"
    listed = api(service, owner, "GET", "/conversations").json()["data"]
    sent = api(service, owner, "POST", f"/conversations/{listed[0]['id']}/messages", json={"content": SALE})
    assert sent.status_code == 200, sent.text
    assert texts(sandbox, live_shop, jane, at_least=1)  # at X, and its echo delivered to the service
    sandbox.wait_for(lambda: len(sandbox.deliveries()) >= 2)  # the customer's DM, then the echo (waited for)
    outbound = list(Message.objects.filter(direction="outbound").values_list("content", "status"))
    assert outbound == [(SALE, "sent")]  # the wrapped echo was known as ours: stored once


def test_a_dm_with_media_gets_the_link_x_appends_for_it(sandbox, shop, fans):
    client = account_client(fans[0].account)
    media_id = client.upload_media(b"\x89PNG fake image bytes", "image/png")
    sent = client.send_dm(fans[0].contact.twitter_user_id, text="Your card", media_id=media_id)
    (at_x,) = sandbox.dms(senderId=shop["id"])
    assert at_x["text"] == "Your card" and at_x["xText"].startswith("Your card https://t.co/")
    (media_link,) = at_x["entities"]["urls"]
    assert media_link["expanded_url"] == f"https://twitter.com/messages/media/{sent.dm_event_id}"
    assert at_x["xText"][media_link["indices"][0] : media_link["indices"][1]] == media_link["url"]
    (event,) = client.dm_events(fans[0].contact.twitter_user_id)
    assert event["text"] == at_x["xText"] and event["attachments"]["media_keys"]
