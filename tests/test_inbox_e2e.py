"""The inbox end to end over real HTTP: customers played in the X sandbox, the service on a live server."""

from __future__ import annotations

import pytest
import requests

from contacts.models import ConsentEvent, Contact, Conversation, Message
from mktx.accounts.models import Account
from tests.factories import access_token

pytestmark = pytest.mark.django_db(transaction=True)


class Inbox:
    """A merchant's client of the API, and the sandbox's view of X."""

    def __init__(self, service: str, sandbox, owner) -> None:
        self.service, self.sandbox, self.owner = service, sandbox, owner
        self.shop = sandbox.user("goodgo_shop", "GoodGo Official")
        connected = self.api("POST", "/accounts", json={k: self.shop[k] for k in ("oauthToken", "oauthTokenSecret")})
        assert connected.status_code == 200, connected.text
        self.account_id = connected.json()["data"]["id"]

    def api(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {access_token(self.owner)}"}
        return requests.request(method, f"{self.service}/api/v1/mkt-x{path}", headers=headers, timeout=30, **kwargs)

    def settle(self) -> None:
        """Wait for X's asynchronous deliveries (echoes of the service's own sends)."""
        assert self.sandbox.server.sandbox.wait_for_deliveries(10)

    def dms_to(self, user: dict) -> list[str]:
        return [d["text"] for d in self.sandbox.dms(senderId=self.shop["id"], recipientId=user["id"])]


@pytest.fixture
def inbox(live_server, settings, sandbox, owner) -> Inbox:
    settings.MKTX_PUBLIC_URL = live_server.url
    return Inbox(live_server.url, sandbox, owner)


def test_a_customer_dm_creates_contact_conversation_and_message(inbox):
    john = inbox.sandbox.user("customer_john", "John Doe")

    sent = inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hello, I have a question about my order")

    assert [d["status"] for d in sent["deliveries"]] == [200]
    contacts = inbox.api("GET", "/contacts").json()["data"]
    assert [(c["username"], c["displayName"], c["twitterUserId"]) for c in contacts] == [
        ("customer_john", "John Doe", john["id"])
    ]
    assert contacts[0]["conversationCount"] == 1
    conversations = inbox.api("GET", "/conversations", params={"status": "open"}).json()["data"]
    assert len(conversations) == 1
    assert conversations[0]["contact"] == {
        "username": "customer_john",
        "displayName": "John Doe",
        "profileImageUrl": "https://pbs.twimg.com/profile_images/customer_john_normal.jpg",
    }
    detail = inbox.api("GET", f"/conversations/{conversations[0]['id']}").json()["data"]
    (message,) = detail["messages"]
    assert (message["direction"], message["content"], message["twitterMessageId"]) == (
        "inbound",
        "Hello, I have a question about my order",
        sent["eventId"],
    )


def test_a_staff_reply_reaches_the_customer_and_its_echo_is_not_stored_twice(inbox):
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Where is my order?")
    conversation_id = inbox.api("GET", "/conversations").json()["data"][0]["id"]

    reply = inbox.api("POST", f"/conversations/{conversation_id}/messages", json={"content": "It shipped today!"})
    inbox.settle()

    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert (data["direction"], data["content"], data["status"]) == ("outbound", "It shipped today!", "sent")
    assert inbox.dms_to(john) == ["It shipped today!"]
    assert data["twitterMessageId"] == inbox.sandbox.dms(senderId=inbox.shop["id"])[0]["id"]
    echo = [d for d in inbox.sandbox.deliveries() if d["kind"] == "direct_message_events"]
    assert len(echo) == 2  # the customer's DM and the echo of the reply, both delivered
    messages = inbox.api("GET", f"/conversations/{conversation_id}").json()["data"]["messages"]
    assert [(m["direction"], m["content"]) for m in messages] == [
        ("inbound", "Where is my order?"),
        ("outbound", "It shipped today!"),
    ]
    assert Message.objects.count() == 2


def test_a_dm_the_merchant_writes_in_xs_own_app_is_stored_as_outbound(inbox):
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hi")
    from requests_oauthlib import OAuth1

    from tests.conftest import CONSUMER_KEY, CONSUMER_SECRET

    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, inbox.shop["oauthToken"], inbox.shop["oauthTokenSecret"])
    requests.post(
        f"{inbox.sandbox.url}/2/dm_conversations/with/{john['id']}/messages",
        json={"text": "From my phone"},
        auth=auth,
        timeout=5,
    )
    inbox.settle()

    outbound = Message.objects.get(direction="outbound")
    assert (outbound.origin, outbound.content, outbound.status) == ("x_app", "From my phone", "sent")
    assert Conversation.objects.get().message_count == 2


def test_stop_opts_out_with_one_confirmation_and_start_opts_back_in(inbox):
    john = inbox.sandbox.user("customer_john")

    inbox.sandbox.dm(john["id"], inbox.shop["id"], "  Stop ")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "STOP")  # already out: no second confirmation
    inbox.settle()

    contact = Contact.objects.get()
    assert contact.opted_out and contact.opted_out_at is not None
    assert inbox.dms_to(john) == ["You are unsubscribed from our marketing messages. Reply START to subscribe again."]
    (event,) = ConsentEvent.objects.all()
    assert (event.action, event.keyword) == ("opt_out", "stop")
    assert event.message is not None and event.message.content == "  Stop "

    inbox.sandbox.dm(john["id"], inbox.shop["id"], "start")
    inbox.settle()

    contact.refresh_from_db()
    assert not contact.opted_out
    assert inbox.dms_to(john)[-1] == "You are subscribed to our messages again. Reply STOP to unsubscribe."
    assert list(ConsentEvent.objects.order_by("created_at").values_list("action", flat=True)) == ["opt_out", "opt_in"]


def test_words_that_merely_contain_a_keyword_do_not_opt_out(inbox):
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "please stop the order")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "stopping")
    assert not Contact.objects.get().opted_out
    assert not ConsentEvent.objects.exists()


def test_the_merchants_own_opt_out_words_count(inbox):
    inbox.api("PUT", f"/accounts/{inbox.account_id}", json={"optOutKeywords": ["DỪNG"]})
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "dừng")
    assert Contact.objects.get().opted_out


def test_outside_business_hours_the_away_message_goes_once(inbox):
    closed_all_week = {"enabled": True, "timezone": "Asia/Ho_Chi_Minh", "schedule": {}}
    updated = inbox.api(
        "PUT",
        f"/accounts/{inbox.account_id}",
        json={"autoReplyEnabled": True, "businessHours": closed_all_week, "awayMessage": "We are closed, back at 9am."},
    )
    assert updated.status_code == 200
    john = inbox.sandbox.user("customer_john")

    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hello?")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Anyone there?")
    inbox.settle()

    assert inbox.dms_to(john) == ["We are closed, back at 9am."]
    away = Message.objects.get(direction="outbound")
    assert (away.origin, away.status) == ("system", "sent")


def test_no_away_message_within_business_hours_or_when_auto_reply_is_off(inbox):
    always_open = {
        "enabled": True,
        "timezone": "UTC",
        "schedule": {day: {"start": "00:00", "end": "23:59"} for day in
                     ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")},
    }  # fmt: skip
    inbox.api(
        "PUT",
        f"/accounts/{inbox.account_id}",
        json={"autoReplyEnabled": True, "businessHours": always_open, "awayMessage": "Closed"},
    )
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hello?")
    inbox.api(
        "PUT",
        f"/accounts/{inbox.account_id}",
        json={"autoReplyEnabled": False, "businessHours": {**always_open, "schedule": {}}},
    )
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hello again?")
    inbox.settle()
    assert inbox.dms_to(john) == []
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_follow_creates_a_contact_and_an_unfollow_marks_it(inbox):
    jane = inbox.sandbox.user("jane", "Jane Roe")

    inbox.sandbox.follow(jane["id"], inbox.shop["id"])

    contact = Contact.objects.get()
    assert (contact.username, contact.source, contact.following) == ("jane", "new_follower", True)
    assert contact.conversation_count == 0
    inbox.sandbox.unfollow(jane["id"], inbox.shop["id"])
    contact.refresh_from_db()
    assert contact.following is False


def test_a_read_receipt_sets_read_at_on_the_replies_it_covers(inbox):
    john = inbox.sandbox.user("customer_john")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hi")
    conversation_id = inbox.api("GET", "/conversations").json()["data"][0]["id"]
    first = inbox.api("POST", f"/conversations/{conversation_id}/messages", json={"content": "one"}).json()["data"]
    second = inbox.api("POST", f"/conversations/{conversation_id}/messages", json={"content": "two"}).json()["data"]
    inbox.settle()

    inbox.sandbox.read(john["id"], inbox.shop["id"], first["twitterMessageId"])

    read = {m.content: m.read_at for m in Message.objects.filter(direction="outbound")}
    assert read["one"] is not None and read["two"] is None
    inbox.sandbox.read(john["id"], inbox.shop["id"], second["twitterMessageId"])
    assert Message.objects.filter(direction="outbound", read_at__isnull=True).count() == 0


def test_the_account_statistics_count_the_inbox(inbox):
    john, jane = inbox.sandbox.user("customer_john"), inbox.sandbox.user("jane")
    inbox.sandbox.dm(john["id"], inbox.shop["id"], "Hi")
    inbox.sandbox.dm(jane["id"], inbox.shop["id"], "Hello")
    stats = inbox.api("GET", f"/accounts/{inbox.account_id}").json()["data"]["statistics"]
    assert stats == {"totalContacts": 2, "totalConversations": 2, "messagesThisMonth": 2}
    assert Account.objects.get().status == "active"
