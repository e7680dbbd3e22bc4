"""The bot as a merchant's client and a customer meet it: the conversation endpoints (message, context, escalate),
the decision policy, slots carried across turns, sessions that end when idle, the hand-off, the hourly cap, and the
flows' ai_reply node; sends go to the X sandbox over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chatbot.bot import BOT_DMS_PER_HOUR, bot_answer
from chatbot.models import AISettings, ChatSession
from contacts.models import Conversation, Message, MessageOrigin
from tests.campaign_helpers import FreshTokenClient
from tests.factories import ConversationFactory, MerchantFactory, UserFactory
from tests.flow_helpers import dms_to

pytestmark = pytest.mark.django_db
AI = "/api/v1/mkt-x/ai/conversations"


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)  # the clock moves to 2027 (the jane fixture): tokens minted per request


def conversation_of(person: dict[str, Any]) -> Conversation:
    return Conversation.objects.select_related("account", "contact").get(contact=person["contact"])


def ask(api: Any, conversation: Conversation, text: str, **extra: Any) -> dict[str, Any]:
    response = api.post(f"{AI}/{conversation.pk}/message", {"message": text, **extra}, format="json")
    assert response.status_code == 200, response.json()
    return dict(response.json()["data"])


def test_an_order_question_without_a_lookup_says_it_will_check_and_hands_over(api, jane):
    conversation = conversation_of(jane)
    answer = ask(api, conversation, "Where is my order #12345?")
    assert answer["intent"] == "order_status_query" and answer["slots"]["orderId"] == "12345"
    assert answer["requiresEscalation"] is True and "12345" in answer["response"]
    assert answer["engine"] == "builtin" and answer["sessionId"]
    conversation.refresh_from_db()
    assert conversation.ai_status == "escalated" and conversation.ai_escalation_reason == "order_lookup"
    assert conversation.ai_handoff is not None and conversation.ai_handoff["slots"] == {"orderId": "12345"}


def test_asking_for_a_person_escalates_at_once_with_a_hand_off_summary(api, jane):
    conversation = conversation_of(jane)
    answer = ask(api, conversation, "I want to talk to a real person please")
    assert (answer["intent"], answer["requiresEscalation"]) == ("human_agent_request", True)
    detail = api.get(f"/api/v1/mkt-x/conversations/{conversation.pk}").json()["data"]
    assert detail["aiStatus"] == "escalated" and detail["aiEscalationReason"] == "human_agent_request"
    assert detail["aiHandoff"]["intent"] == "human_agent_request"
    assert detail["aiHandoff"]["lastTurns"][0]["content"] == "I want to talk to a real person please"


def test_a_low_confidence_turn_asks_to_rephrase_and_the_second_escalates(api, jane):
    conversation = conversation_of(jane)
    AISettings.objects.create(merchant_id=conversation.merchant_id, auto_escalation_threshold=0.99)
    first = ask(api, conversation, "hmm the thing from before")
    assert first["requiresEscalation"] is False
    second = ask(api, conversation, "you know what i mean")
    assert second["requiresEscalation"] is True
    conversation.refresh_from_db()
    assert conversation.ai_escalation_reason == "low_confidence"


def test_an_order_number_given_next_answers_the_pending_question(api, jane, settings):
    conversation = conversation_of(jane)
    first = ask(api, conversation, "where is my order?")
    assert first["intent"] == "order_status_query" and "orderId" not in first["slots"]
    second = ask(api, conversation, "12345")
    assert second["intent"] == "order_status_query" and second["slots"]["orderId"] == "12345"
    context = api.get(f"{AI}/{conversation.pk}/context").json()["data"]
    assert [turn["role"] for turn in context["context"]] == ["user", "assistant", "user", "assistant"]
    assert context["currentIntent"] == "order_status_query" and context["slots"]["orderId"] == "12345"


def test_a_session_idle_past_the_timeout_ends_and_the_next_message_starts_one(api, jane, clock):
    conversation = conversation_of(jane)
    first = ask(api, conversation, "hello")
    clock.shift(timedelta(minutes=31))
    assert api.get(f"{AI}/{conversation.pk}/context").json()["data"]["status"] == "ended"
    second = ask(api, conversation, "hello again")
    assert second["sessionId"] != first["sessionId"]
    assert ChatSession.objects.filter(conversation=conversation).count() == 2


def test_send_true_sends_the_answer_as_a_bot_dm(api, sandbox, shop, jane):
    conversation = conversation_of(jane)
    answer = ask(api, conversation, "what are your opening hours?", send=True)
    sent = Message.objects.get(origin=MessageOrigin.BOT)
    assert sent.is_from_bot and sent.content == answer["response"]
    assert dms_to(sandbox, shop, jane) == [answer["response"]]


def test_the_bot_sends_at_most_ten_dms_an_hour_in_a_conversation(sandbox, shop, jane):
    conversation = conversation_of(jane)
    for _ in range(BOT_DMS_PER_HOUR + 2):
        bot_answer(conversation=conversation, text="hi!", send=True)
    assert Message.objects.filter(origin=MessageOrigin.BOT).count() == BOT_DMS_PER_HOUR


def test_escalate_hands_the_conversation_over_and_agents_may_do_it(agent, jane):
    conversation = conversation_of(jane)
    response = FreshTokenClient(agent).post(f"{AI}/{conversation.pk}/escalate", {"reason": "vip"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["aiStatus"] == "escalated"
    conversation.refresh_from_db()
    assert (conversation.ai_status, conversation.ai_escalation_reason) == ("escalated", "vip")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("post", "/message", {"message": "hi"}), ("get", "/context", None), ("post", "/escalate", {"reason": "x"})],
)
def test_another_merchants_conversation_is_404(client_for, method, suffix, body):
    stranger = UserFactory.create(merchant=MerchantFactory.create())
    theirs = ConversationFactory.create()
    response = getattr(client_for(stranger), method)(f"{AI}/{theirs.pk}{suffix}", body, format="json")
    assert response.status_code == 404
    assert not ChatSession.objects.exists()


def test_an_openai_engine_that_fails_answers_502_on_the_api_and_falls_back_when_auto_replying(api, jane, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens: the client's call fails
    conversation = conversation_of(jane)
    AISettings.objects.create(merchant_id=conversation.merchant_id, engine="openai")
    response = api.post(f"{AI}/{conversation.pk}/message", {"message": "hello"}, format="json")
    assert response.status_code == 502 and response.json()["code"] == "AI_SERVICE_ERROR"
    answer = bot_answer(conversation=conversation, text="hello", send=False, auto=True)
    assert answer.engine == "builtin" and answer.fallback_reason == "openai_unavailable"
    assert answer.intent == "greeting"


def test_the_flows_ai_reply_node_answers_the_last_dm_and_takes_its_branch(sandbox, shop, jane):
    from automation.models import Execution
    from automation.triggers import contacts_enroll
    from tests.campaign_helpers import customer
    from tests.flow_helpers import active_flow, inbound, node, run_due

    nodes = [
        node("ai", "ai_reply"),
        node("ok", "add_tag", tags=["answered"]),
        node("up", "add_tag", tags=["escalated"]),
    ]
    connections = [
        {"fromNodeId": "ai", "toNodeId": "ok", "branch": "answered"},
        {"fromNodeId": "ai", "toNodeId": "up", "branch": "escalated"},
    ]
    flow = active_flow(jane["contact"].merchant, "manual", nodes, connections)
    bob = customer(sandbox, shop, "bob_buyer")
    inbound(bob, "I want to speak to a human agent")
    contacts_enroll(flow=flow, contacts=[jane["contact"], bob["contact"]])  # jane's last DM: "Hello shop"
    run_due()
    tags = {e.contact_id: e.contact.tag_names for e in Execution.objects.select_related("contact").filter(flow=flow)}
    assert tags == {jane["contact"].pk: ["answered"], bob["contact"].pk: ["escalated"]}
    assert len(dms_to(sandbox, shop, jane)) == 1 and len(dms_to(sandbox, shop, bob)) == 1


def test_round_robin_escalation_assigns_the_merchants_agents_in_turn(sandbox, shop, jane, merchant):
    from chatbot.bot import escalate
    from mktx.iam.models import Role
    from tests.campaign_helpers import customer

    AISettings.objects.create(merchant=merchant, escalation_assignment="round_robin")
    first, second = (UserFactory.create(merchant=merchant, role=Role.AGENT) for _ in range(2))
    bob = customer(sandbox, shop, "bob_buyer")
    assert escalate(conversation=conversation_of(jane), reason="vip") is True
    assert escalate(conversation=conversation_of(bob), reason="vip") is True
    assert escalate(conversation=conversation_of(bob), reason="again") is False  # once
    assignees = {conversation_of(jane).assigned_to_id, conversation_of(bob).assigned_to_id}
    assert assignees == {first.pk, second.pk}


def test_ai_reply_and_the_auto_reply_answer_a_dm_once_and_never_where_people_took_over(sandbox, shop, jane):
    from automation.models import Execution
    from automation.triggers import contacts_enroll
    from chatbot.autoreply import auto_reply
    from tests.flow_helpers import active_flow, inbound, node, run_due

    conversation = conversation_of(jane)
    AISettings.objects.create(merchant_id=conversation.merchant_id, enabled=True, auto_reply=True)
    question = inbound(jane, "what are your opening hours?")
    auto_reply(message_id=question.pk)  # the auto-reply answered it
    nodes = [node("ai", "ai_reply"), node("ok", "add_tag", tags=["answered"]), node("up", "add_tag", tags=["people"])]
    connections = [
        {"fromNodeId": "ai", "toNodeId": "ok", "branch": "answered"},
        {"fromNodeId": "ai", "toNodeId": "up", "branch": "escalated"},
    ]
    flow = active_flow(conversation.merchant, "manual", nodes, connections, reentry="after_completion")
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    assert len(dms_to(sandbox, shop, jane)) == 1  # the flow's ai_reply: the same answer, under the same key
    first = Execution.objects.get(flow=flow)
    assert first.steps.get(node_id="ai").detail["branch"] == "answered"  # it ran, and answered
    assert Conversation.objects.get(pk=conversation.pk).contact.tag_names == ["answered"]
    # handed to people: the node sends nothing and takes the escalated branch
    Conversation.objects.filter(pk=conversation.pk).update(ai_status="escalated")
    inbound(jane, "hello?")
    contacts_enroll(flow=flow, contacts=[jane["contact"]])
    run_due()
    assert len(dms_to(sandbox, shop, jane)) == 1
    latest = Execution.objects.filter(flow=flow).order_by("-started_at").first()
    assert latest is not None and latest.steps.get(node_id="ai").detail["branch"] == "escalated"


def test_the_api_does_not_send_into_a_conversation_handed_to_people(api, sandbox, shop, jane):
    conversation = conversation_of(jane)
    Conversation.objects.filter(pk=conversation.pk).update(ai_status="escalated")
    answer = ask(api, conversation, "what are your opening hours?", send=True)
    assert answer["response"] and dms_to(sandbox, shop, jane) == []
