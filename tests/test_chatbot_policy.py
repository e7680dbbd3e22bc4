"""The bot's finer manners: the opening hours from the account's business hours (in both engines' knowledge), no
loop of courtesies ("thanks" after its own "You're welcome"), and one answer at a time per conversation (a second DM
that arrives while the first is answered waits for it and sees what it carried)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from chatbot import sessions
from chatbot.bot import bot_answer
from chatbot.models import AISettings, ChatSession
from chatbot.nlu.hours import hours_sentence, opening_spans
from contacts.models import Conversation, Message, MessageOrigin
from tests.flow_helpers import dms_to

pytestmark = pytest.mark.django_db

WEEK = {
    "enabled": True,
    "timezone": "Asia/Ho_Chi_Minh",
    "schedule": {
        **{day: {"start": "09:00", "end": "18:00"} for day in ("monday", "tuesday", "wednesday", "thursday")},
        "friday": {"start": "09:00", "end": "17:00"},
        "saturday": {"start": "10:00", "end": "14:00"},
    },
}


def conversation_of(person: dict[str, Any]) -> Conversation:
    return Conversation.objects.select_related("account", "contact").get(contact=person["contact"])


def test_opening_hours_group_the_days_with_the_same_hours():
    assert opening_spans(WEEK) == [(0, 3, "09:00", "18:00"), (4, 4, "09:00", "17:00"), (5, 5, "10:00", "14:00")]
    assert hours_sentence(WEEK, "en") == (
        "We're open Monday to Thursday 09:00-18:00, Friday 09:00-17:00 and Saturday 10:00-14:00 "
        "(Asia/Ho_Chi_Minh time). You can write to us here at any time and we'll answer when we're open."
    )
    assert str(hours_sentence(WEEK, "vi")).startswith("Shop làm việc Thứ Hai đến Thứ Năm 09:00-18:00, Thứ Sáu")
    two = {
        **WEEK,
        "schedule": {"monday": {"start": "09:00", "end": "18:00"}, "tuesday": {"start": "09:00", "end": "18:00"}},
    }
    assert str(hours_sentence(two, "en")).startswith("We're open Monday and Tuesday 09:00-18:00 (")
    # a day whose hours do not parse is left out; hours not enabled tell nothing
    assert opening_spans({**WEEK, "schedule": {"monday": {"start": "9am", "end": "18:00"}}}) == []
    assert hours_sentence({**WEEK, "enabled": False}, "en") is None
    assert hours_sentence(None, "en") is None


def test_the_bot_answers_opening_hours_from_the_accounts_business_hours(sandbox, shop, jane):
    conversation = conversation_of(jane)
    generic = bot_answer(conversation=conversation, text="what are your opening hours?", send=False)
    assert generic.intent == "store_hours" and "09:00" not in generic.response
    conversation.account.business_hours = WEEK
    conversation.account.save(update_fields=["business_hours"])
    conversation = conversation_of(jane)
    answer = bot_answer(conversation=conversation, text="what are your opening hours?", send=False)
    assert answer.response.startswith("We're open Monday to Thursday 09:00-18:00")
    vi = bot_answer(conversation=conversation, text="shop mở cửa mấy giờ vậy?", send=False)
    assert vi.intent == "store_hours" and vi.response.startswith("Shop làm việc Thứ Hai")


def test_a_thanks_after_the_bots_own_youre_welcome_gets_no_dm(sandbox, shop, jane):
    conversation = conversation_of(jane)
    first = bot_answer(conversation=conversation, text="thank you!", send=True)
    assert first.intent == "thanks" and first.sent is not None
    second = bot_answer(conversation=conversation, text="ok", send=True)
    assert second.intent == "thanks" and second.sent is None and second.notes["silent"]
    assert dms_to(sandbox, shop, jane) == [first.response]
    # a new question after it is answered as usual
    third = bot_answer(conversation=conversation, text="do you ship to Hanoi?", send=True)
    assert third.sent is not None and len(dms_to(sandbox, shop, jane)) == 2


def in_thread(work: Any) -> Any:
    """`work` in a thread of its own, on its own database connection (closed after), as another worker would."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    return run


@pytest.mark.django_db(transaction=True)
def test_a_second_answer_waits_while_the_first_holds_the_session(jane):
    conversation = conversation_of(jane)
    ai = AISettings.objects.create(merchant_id=conversation.merchant_id)
    held = sessions.session_hold(conversation=conversation, settings=ai)
    started = time.monotonic()

    def first_ends() -> None:  # the first answer is done in 0.4 s
        time.sleep(0.4)
        sessions.session_release(held)

    threading.Thread(target=in_thread(first_ends)).start()
    again = sessions.session_hold(conversation=conversation, settings=ai)
    waited = time.monotonic() - started
    assert again.pk == held.pk and 0.3 <= waited < 5
    sessions.session_release(again)
    assert ChatSession.objects.get(pk=held.pk).answering_until is None


def test_a_hold_left_by_a_dead_worker_runs_out(jane, monkeypatch):
    conversation = conversation_of(jane)
    ai = AISettings.objects.create(merchant_id=conversation.merchant_id)
    held = sessions.session_hold(conversation=conversation, settings=ai)  # never released: its worker died
    monkeypatch.setattr(sessions, "HOLD", timedelta(seconds=0.3))
    started = time.monotonic()
    again = sessions.session_hold(conversation=conversation, settings=ai)
    assert again.pk == held.pk and time.monotonic() - started >= 0.25
    assert again.answering_until is not None and again.answering_until > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_the_second_answer_sees_what_the_first_carried(sandbox, shop, jane):
    """Two DMs a moment apart, answered in two workers: "where is my order?" then "12345". Whichever runs second
    reads the first's turn, so the order number answers the pending question."""
    conversation = conversation_of(jane)
    ai = AISettings.objects.create(merchant_id=conversation.merchant_id)
    held = sessions.session_hold(conversation=conversation, settings=ai)
    results: dict[str, Any] = {}

    def second() -> None:
        results["answer"] = bot_answer(conversation=conversation_of(jane), text="12345", send=False, settings=ai)

    worker = threading.Thread(target=in_thread(second))
    worker.start()
    time.sleep(0.3)
    assert "answer" not in results  # waiting for the first
    sessions.session_record(
        session=held,
        now=timezone.now(),
        message="where is my order?",
        response="What is your order number?",
        intent="order_status_query",
        confidence=0.9,
        slots={},
        engine="builtin",
        fallback_reason="",
        low_confidence_streak=0,
    )
    sessions.session_release(held)
    worker.join(10)
    answer = results["answer"]
    assert answer.intent == "order_status_query" and answer.slots["orderId"] == "12345"
    assert Message.objects.filter(origin=MessageOrigin.BOT).count() == 0


def test_the_merchants_faq_answers_what_the_intents_do_not_cover(jane):
    from chatbot.models import FAQ

    conversation = conversation_of(jane)
    FAQ.objects.create(merchant_id=conversation.merchant_id, question="Who designed your logo?", answer="Studio Mai.")
    for _ in range(2):  # never "please rephrase", never handed over for it
        answer = bot_answer(conversation=conversation, text="who designed your logo?", send=False)
        assert (answer.response, answer.requires_escalation) == ("Studio Mai.", False)
    conversation.refresh_from_db()
    assert conversation.ai_status == "none"


def test_a_near_exact_faq_match_stands_where_the_engine_reads_a_complaint_and_a_loose_one_does_not(jane):
    from chatbot import nlu
    from chatbot.models import FAQ

    conversation = conversation_of(jane)
    question = "Is the quality bad on the cheap bags?"
    assert nlu.understand(question).intent == "complaint"  # what the engine alone makes of it
    FAQ.objects.create(merchant_id=conversation.merchant_id, question=question, answer="No: same leather, 2y warranty.")
    answer = bot_answer(conversation=conversation, text="is the quality bad on the cheap bags?", send=False)
    assert (answer.response, answer.requires_escalation, answer.intent) == (
        "No: same leather, 2y warranty.",
        False,
        "unknown",
    )
    angry = bot_answer(conversation=conversation, text="the quality is awful, the bag I got is ripped!", send=False)
    assert angry.requires_escalation is True and angry.intent == "complaint"


@pytest.mark.parametrize("text", ["I want to talk to a person", "this is a scam, I am furious"])
def test_a_request_for_a_person_or_a_complaint_escalates_whatever_the_threshold(jane, text):
    conversation = conversation_of(jane)
    AISettings.objects.create(merchant_id=conversation.merchant_id, auto_escalation_threshold=1.0)
    answer = bot_answer(conversation=conversation, text=text, send=False)
    assert answer.requires_escalation is True and answer.escalation_reason in ("human_agent_request", "complaint")


def test_agents_use_the_message_and_context_endpoints(agent, jane):
    from tests.campaign_helpers import FreshTokenClient

    conversation = conversation_of(jane)
    client = FreshTokenClient(agent)
    asked = client.post(
        f"/api/v1/mkt-x/ai/conversations/{conversation.pk}/message", {"message": "hello"}, format="json"
    )
    assert asked.status_code == 200 and asked.json()["data"]["intent"] == "greeting"
    context = client.get(f"/api/v1/mkt-x/ai/conversations/{conversation.pk}/context")
    assert context.status_code == 200 and [t["role"] for t in context.json()["data"]["context"]] == [
        "user",
        "assistant",
    ]


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        ("message", {"message": 5}, "message"),
        ("message", {"message": "hi", "send": "yes"}, "send"),
        ("message", {"message": "hi", "sned": True}, "sned"),
        ("escalate", {"reason": 5}, "reason"),
        ("escalate", [], None),
    ],
)
def test_the_conversation_endpoints_refuse_what_json_does_not_say(owner, jane, suffix, body, field):
    from tests.campaign_helpers import FreshTokenClient

    conversation = conversation_of(jane)
    response = FreshTokenClient(owner).post(
        f"/api/v1/mkt-x/ai/conversations/{conversation.pk}/{suffix}", body, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    if field:
        assert field in str(response.json()["details"])
    assert not Message.objects.filter(origin=MessageOrigin.BOT).exists()
