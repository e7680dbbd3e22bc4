"""The bot end to end over real HTTP both ways: the merchant turns it on with one PUT, a customer's DM at the sandbox
reaches the service's webhook, the bot answers over X, and a request for a person hands the conversation over (the
bot then stays silent there)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from contacts.models import Conversation, Message, MessageOrigin
from tests.factories import access_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def service(live_server, settings, sandbox):
    settings.MKTX_PUBLIC_URL = live_server.url
    return live_server.url


def api(service: str, user: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token(user)}"}
    return requests.request(method, f"{service}/api/v1/mkt-x{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture
def shop(service, sandbox, owner):
    shop = sandbox.user("goodgo_shop")
    body = {"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]}
    assert api(service, owner, "POST", "/accounts", json=body).status_code == 200
    return shop


def texts(sandbox: Any, sender: dict[str, Any], recipient: dict[str, Any]) -> list[str]:
    return [dm["text"] for dm in sandbox.dms(senderId=sender["id"], recipientId=recipient["id"])]


def test_the_bot_answers_a_customer_over_x_and_hands_over_when_asked(service, sandbox, shop, owner):
    turned_on = api(service, owner, "PUT", "/ai/settings", json={"enabled": True, "autoReply": True})
    assert turned_on.status_code == 200, turned_on.text
    jane = sandbox.user("jane_doe", "Jane Doe")
    sandbox.dm(jane["id"], shop["id"], "where is my order #12345?")
    answered = texts(sandbox, shop, jane)
    assert len(answered) == 1 and "12345" in answered[0]
    bot_dm = Message.objects.get(origin=MessageOrigin.BOT)
    assert bot_dm.is_from_bot
    # the order could not be looked up (no lookup URL): handed to people already; a person closes it, a new talk
    conversation = Conversation.objects.get()
    assert conversation.ai_status == "escalated"
    closed = api(service, owner, "PUT", f"/conversations/{conversation.pk}/close", json={"reason": "answered"})
    assert closed.status_code == 200, closed.text
    sandbox.dm(jane["id"], shop["id"], "hi there!")
    assert len(texts(sandbox, shop, jane)) == 2  # the new conversation is the bot's: it greets
    sandbox.dm(jane["id"], shop["id"], "I want to talk to a person")
    sent = texts(sandbox, shop, jane)
    assert len(sent) == 3 and "team" in sent[2]  # the hand-off message, once
    latest = Conversation.objects.order_by("-started_at").first()
    assert latest is not None and latest.ai_status == "escalated"
    assert latest.ai_escalation_reason == "human_agent_request"
    sandbox.dm(jane["id"], shop["id"], "hello? anyone?")
    assert len(texts(sandbox, shop, jane)) == 3  # silent until a person closes it
