"""The bot end to end over real HTTP both ways: the merchant turns it on with one PUT, a customer's DM at the sandbox
reaches the service's webhook, the bot answers over X, and a request for a person hands the conversation over (the
bot then stays silent there)."""

from __future__ import annotations

import pytest

from contacts.models import Conversation, Message, MessageOrigin
from tests.live_helpers import api, texts

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_bot_answers_a_customer_over_x_and_hands_over_when_asked(service, sandbox, live_shop, owner):
    turned_on = api(service, owner, "PUT", "/ai/settings", json={"enabled": True, "autoReply": True})
    assert turned_on.status_code == 200, turned_on.text
    jane = sandbox.user("jane_doe", "Jane Doe")
    sandbox.dm(jane["id"], live_shop["id"], "where is my order #12345?")
    answered = texts(sandbox, live_shop, jane, at_least=1)
    assert len(answered) == 1 and "12345" in answered[0]
    bot_dm = Message.objects.get(origin=MessageOrigin.BOT)
    assert bot_dm.is_from_bot
    # the order could not be looked up (no lookup URL): handed to people already; a person closes it, a new talk
    conversation = Conversation.objects.get()
    assert conversation.ai_status == "escalated"
    closed = api(service, owner, "PUT", f"/conversations/{conversation.pk}/close", json={"reason": "answered"})
    assert closed.status_code == 200, closed.text
    sandbox.dm(jane["id"], live_shop["id"], "hi there!")
    assert len(texts(sandbox, live_shop, jane, at_least=2)) == 2  # the new conversation is the bot's: it greets
    sandbox.dm(jane["id"], live_shop["id"], "I want to talk to a person")
    sent = texts(sandbox, live_shop, jane, at_least=3)
    assert len(sent) == 3 and "team" in sent[2]  # the hand-off message, once
    latest = Conversation.objects.order_by("-started_at").first()
    assert latest is not None and latest.ai_status == "escalated"
    assert latest.ai_escalation_reason == "human_agent_request"
    sandbox.dm(jane["id"], live_shop["id"], "hello? anyone?")
    assert len(texts(sandbox, live_shop, jane)) == 3  # silent until a person closes it
