"""Conversation detail pages its messages: the newest `messagesTake`, newest last, with the total (issue 11, 12)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Message
from tests.factories import AccountFactory, ContactFactory, ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db
CONVERSATIONS = "/api/v1/mkt-x/conversations"


@pytest.fixture
def long_conversation(merchant):
    account = AccountFactory.create(merchant=merchant)
    contact = ContactFactory.create(account=account, merchant=merchant)
    conversation = ConversationFactory.create(contact=contact)
    start = timezone.now() - timedelta(days=1)
    messages = MessageFactory.create_batch(60, conversation=conversation)
    for n, message in enumerate(messages):  # one clear order, whatever the clock's resolution
        Message.objects.filter(pk=message.pk).update(created_at=start + timedelta(seconds=n))
    return conversation, [str(m.id) for m in messages]


def test_the_detail_holds_the_newest_fifty_messages_newest_last_with_the_total(api, long_conversation):
    conversation, ids = long_conversation
    data = api.get(f"{CONVERSATIONS}/{conversation.id}").json()["data"]
    assert [m["id"] for m in data["messages"]] == ids[-50:]
    assert data["messagesTotal"] == 60


def test_messages_take_chooses_how_many_of_the_newest(api, long_conversation, count_queries):
    conversation, ids = long_conversation
    with count_queries() as queries:
        data = api.get(f"{CONVERSATIONS}/{conversation.id}", {"messagesTake": "5"}).json()["data"]
    assert queries["n"] <= 4  # the user, the conversation, a page of messages, their count
    assert [m["id"] for m in data["messages"]] == ids[-5:]
    assert data["messagesTotal"] == 60
    everything = api.get(f"{CONVERSATIONS}/{conversation.id}", {"messagesTake": "200"}).json()["data"]
    assert [m["id"] for m in everything["messages"]] == ids


@pytest.mark.parametrize("value", ["0", "201", "-1", "ten", "1e3", ""])
def test_an_invalid_messages_take_is_a_validation_error_naming_it(api, long_conversation, value):
    conversation, _ = long_conversation
    response = api.get(f"{CONVERSATIONS}/{conversation.id}", {"messagesTake": value})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "messagesTake"


def test_without_messages_there_is_no_total_either(api, long_conversation):
    conversation, _ = long_conversation
    data = api.get(f"{CONVERSATIONS}/{conversation.id}", {"includeMessages": "false"}).json()["data"]
    assert "messages" not in data
    assert "messagesTotal" not in data
    assert data["messageCount"] == conversation.message_count


def test_the_schema_documents_messages_take():
    from django.test import Client

    schema = Client().get("/api/v1/mkt-x/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    detail = schema["paths"]["/api/v1/mkt-x/conversations/{id}"]["get"]
    take = next(p for p in detail["parameters"] if p["name"] == "messagesTake")
    assert take["schema"]["maximum"] == 200


def test_messages_skip_reads_a_long_conversation_backwards_to_its_first_message(api, long_conversation):
    conversation, ids = long_conversation
    pages = [
        api.get(f"{CONVERSATIONS}/{conversation.id}", {"messagesTake": "25", "messagesSkip": str(skip)}).json()["data"]
        for skip in (0, 25, 50, 75)
    ]
    assert [m["id"] for m in pages[1]["messages"]] == ids[10:35]
    assert [m["id"] for m in pages[2]["messages"]] == ids[:10]
    assert pages[3]["messages"] == []
    assert {page["messagesTotal"] for page in pages} == {60}
    read_back = [m["id"] for page in reversed(pages) for m in page["messages"]]
    assert read_back == ids


@pytest.mark.parametrize("value", ["-1", "x"])
def test_an_invalid_messages_skip_is_a_validation_error_naming_it(api, long_conversation, value):
    conversation, _ = long_conversation
    response = api.get(f"{CONVERSATIONS}/{conversation.id}", {"messagesSkip": value})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "messagesSkip"
