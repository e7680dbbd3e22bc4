"""The bot: one customer message in, one answer out (CONTRACT.md "AI chatbot"). `bot_answer` is what the API's
`POST /ai/conversations/{id}/message`, the auto-reply of inbound DMs and the flows' `ai_reply` node all call.

For a message it: finds the conversation's session (a new one after `sessionTimeoutMinutes` idle); asks the
engine (the built-in one, or the OpenAI-compatible one, which falls back to the built-in one when auto-replying and
answers 502 on the API when it fails); carries the intent and slots across turns (an order number given after the
bot asked for it answers the pending question); prefers the merchant's FAQ answer when it matches; looks the order
up at the merchant when it can; then decides (the decision policy): `human_agent_request` and `complaint` escalate at
once; a confidence under `autoEscalationThreshold` first asks to rephrase and escalates on the second such turn in a
row; an order it cannot look up is handed to a person. It records both turns, escalates (the hand-off summary on
the conversation, the session `escalated`, round-robin assignment when set), and sends when asked: the answer, or
the `handoffMessage` once when the bot escalates by itself, through the outbound path as a bot DM, at most
BOT_DMS_PER_HOUR per conversation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from chatbot import nlu
from chatbot.ai_settings import ai_settings_of
from chatbot.faq import MAX_FAQ
from chatbot.models import FAQ, AISettings, ChatSession, Engine, EscalationAssignment, SessionStatus
from chatbot.openai_engine import AIServiceError, openai_reply
from chatbot.order_lookup import order_lookup
from chatbot.sessions import session_end, session_history, session_hold, session_record, session_release
from contacts.models import AIStatus, Conversation, ConversationStatus, Message, MessageOrigin
from contacts.services.conversations import conversation_ai_escalate, conversation_assign, conversation_assignee_next
from contacts.services.outbound import message_send
from mktx.api.errors import ApiError
from mktx.iam.models import Role

logger = logging.getLogger("mktx.chatbot")

ESCALATING = nlu.ESCALATING_INTENTS
BOT_DMS_PER_HOUR = 10


@dataclass
class BotAnswer:
    intent: str
    confidence: float
    response: str
    slots: dict[str, str]
    requires_escalation: bool
    engine: str
    session_id: str
    escalation_reason: str = ""
    fallback_reason: str = ""
    sent: Message | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "response": self.response,
            "slots": self.slots,
            "requiresEscalation": self.requires_escalation,
            "engine": self.engine,
            "sessionId": self.session_id,
        }


def bot_may_answer(conversation: Conversation) -> bool:
    """Whether the bot answers this conversation by itself: open, not handed to people, not assigned to a person."""
    return (
        conversation.status == ConversationStatus.OPEN
        and conversation.ai_status != AIStatus.ESCALATED
        and conversation.assigned_to_id is None
    )


def bot_answer(
    *,
    conversation: Conversation,
    text: str,
    send: bool,
    auto: bool = False,
    idempotency_key: str | None = None,
    settings: AISettings | None = None,
) -> BotAnswer:
    """Answer `text` in `conversation` (its account and contact loaded). `auto`: the bot answers by itself (an
    inbound DM, a flow), so an OpenAI failure falls back to the built-in engine instead of raising."""
    settings = settings or ai_settings_of(merchant_id=conversation.merchant_id)
    session = session_hold(conversation=conversation, settings=settings)
    try:
        # what the answer before this one (held the session) may have changed: escalated, assigned, closed
        conversation.refresh_from_db(fields=["status", "ai_status", "assigned_to"])
        return _answer(conversation, session, settings, text, send=send, auto=auto, idempotency_key=idempotency_key)
    finally:
        session_release(session)


def _answer(
    conversation: Conversation,
    session: ChatSession,
    settings: AISettings,
    text: str,
    *,
    send: bool,
    auto: bool,
    idempotency_key: str | None,
) -> BotAnswer:
    now = timezone.now()
    closing_again = session.current_intent == "thanks"
    pending_order = session.current_intent == "order_status_query" and "orderId" not in session.slots
    hours = conversation.account.business_hours
    reply = _engine_reply(settings, session, text, auto, expect_order_id=pending_order, business_hours=hours)
    intent, confidence, response, slots = reply.intent, reply.confidence, reply.response, dict(reply.slots)
    # carried across turns: the slots so far, and a pending question the new message answers
    carried = {**session.slots, **slots}
    vague = intent == "unknown" or confidence < settings.auto_escalation_threshold
    if pending_order and "orderId" in slots and intent != "order_status_query" and vague:
        intent, confidence = "order_status_query", max(confidence, 0.9)
        response = _builtin_answer(intent, carried, text, business_hours=hours)
    escalation = ""
    streak = 0
    if reply.from_faq:
        pass  # the merchant's own answer to this question: nothing to rephrase, nobody to call
    elif intent in ESCALATING:
        escalation = intent  # at once (CONTRACT.md: requiresEscalation for these two)
    elif intent == "unknown" or confidence < settings.auto_escalation_threshold:  # unknown: nothing understood
        if session.low_confidence_streak >= 1:
            escalation = "low_confidence"
        else:
            streak = 1
            response = nlu.rephrase(nlu.detect_language(text))
    elif intent == "order_status_query" and carried.get("orderId"):  # whatever the engine: never an invented status
        response, lookup_failed = _order_answer(settings, conversation, carried, text)
        if lookup_failed:
            escalation = "order_lookup"
    answer = BotAnswer(
        intent=intent,
        confidence=confidence,
        response=response,
        slots=carried,
        requires_escalation=bool(escalation),
        engine=reply.engine,
        session_id=str(session.pk),
        escalation_reason=escalation,
        fallback_reason=reply.fallback_reason,
    )
    if escalation:
        answer.response = response if escalation == "order_lookup" else settings.handoff_message
    session_record(
        session=session,
        now=now,
        message=text,
        response=answer.response,
        intent=intent,
        confidence=confidence,
        slots=carried,
        engine=reply.engine,
        fallback_reason=reply.fallback_reason,
        low_confidence_streak=streak,
    )
    handed_over = False
    if escalation:
        handed_over = escalate(conversation=conversation, reason=escalation, session=session, settings=settings)
    # the bot speaks only where it may: not in a conversation handed to people (before this answer) or assigned
    may_speak = conversation.status == ConversationStatus.OPEN and (handed_over or bot_may_answer(conversation))
    # "ok" after the bot's "You're welcome! Anything else?" needs no answer: no loop of courtesies
    needless = intent == "thanks" and closing_again and not escalation
    if needless:
        answer.notes["silent"] = "closing after a closing"
    if send and may_speak and (not escalation or handed_over) and not needless:
        answer.sent = _send(conversation, answer.response, idempotency_key)
    return answer


@dataclass(frozen=True)
class _Reply:
    intent: str
    confidence: float
    response: str
    slots: dict[str, str]
    engine: str
    fallback_reason: str = ""
    from_faq: bool = False


def _faq_entries(merchant_id: Any) -> list[nlu.FaqEntry]:
    rows = FAQ.objects.filter(merchant_id=merchant_id).values_list("question", "answer", "intent")[:MAX_FAQ]
    return [nlu.FaqEntry(question=q, answer=a, intent=i) for q, a, i in rows]


def _engine_reply(
    settings: AISettings,
    session: ChatSession,
    text: str,
    auto: bool,
    *,
    expect_order_id: bool,
    business_hours: dict[str, Any] | None,
) -> _Reply:
    if settings.engine == Engine.OPENAI:
        faq = nlu.faq_ranked(text, _faq_entries(settings.pk))  # it sees the first few: the closest ones
        if hours := nlu.hours_sentence(business_hours, "en"):  # the opening hours as one more thing the shop says
            faq.insert(0, nlu.FaqEntry(question="What are your opening hours?", answer=hours, intent="store_hours"))
        try:
            got = openai_reply(settings=settings, history=session_history(session), message=text, faq=faq)
            return _Reply(got.intent, got.confidence, got.response, dict(got.slots), Engine.OPENAI)
        except AIServiceError as exc:
            if not auto:
                raise
            reason = str(exc.details.get("reason", "unavailable"))
            logger.warning("the OpenAI engine failed (%s): the built-in engine answers", reason)
            return _builtin(settings, text, expect_order_id, business_hours, fallback_reason=f"openai_{reason}")
    return _builtin(settings, text, expect_order_id, business_hours)


def _builtin(
    settings: AISettings,
    text: str,
    expect_order_id: bool,
    business_hours: dict[str, Any] | None,
    *,
    fallback_reason: str = "",
) -> _Reply:
    understood = nlu.understand(text, expect_order_id=expect_order_id)
    faq = nlu.faq_match(text, _faq_entries(settings.pk))
    if faq is not None and (understood.intent not in ESCALATING or faq.score >= nlu.FAQ_MATCH_STRONG):
        # the entry's intent, else the engine's: never an escalating one the answer does not act on
        intent = faq.entry.intent or (understood.intent if understood.intent not in ESCALATING else "unknown")
        confidence = max(understood.confidence, faq.score)
        slots = dict(understood.slots)
        return _Reply(intent, confidence, faq.entry.answer, slots, Engine.BUILTIN, fallback_reason, from_faq=True)
    response = nlu.answer(understood, business_hours=business_hours)
    return _Reply(
        understood.intent, understood.confidence, response, dict(understood.slots), Engine.BUILTIN, fallback_reason
    )


def _builtin_answer(intent: str, slots: dict[str, str], text: str, *, business_hours: dict[str, Any] | None) -> str:
    language = nlu.detect_language(text)
    understood = nlu.Understanding(intent=intent, confidence=1.0, slots=slots, language=language)
    return nlu.answer(understood, business_hours=business_hours)


def _order_answer(
    settings: AISettings, conversation: Conversation, slots: dict[str, str], text: str
) -> tuple[str, bool]:
    """The order's status from the merchant's lookup; (the answer, whether it must go to a person)."""
    language = nlu.detect_language(text)
    understood = nlu.Understanding(intent="order_status_query", confidence=1.0, slots=slots, language=language)
    if not settings.order_lookup_url:
        return _will_check(slots["orderId"], language), True
    found = order_lookup(settings=settings, order_id=slots["orderId"], contact=conversation.contact)
    if found.order is None:
        logger.info("order %s: lookup failed (%s); handed to a person", slots["orderId"], found.reason)
        return _will_check(slots["orderId"], language), True
    return nlu.answer(understood, order=found.order), False


def _will_check(order_id: str, language: str) -> str:
    if language == "vi":
        return f"Mình sẽ kiểm tra đơn hàng #{order_id} và một nhân viên sẽ trả lời bạn ngay tại đây nhé."
    return f"I'll check order #{order_id} for you: a member of our team will reply here shortly."


def escalate(
    *, conversation: Conversation, reason: str, session: ChatSession | None = None, settings: AISettings | None = None
) -> bool:
    """Hand the conversation to people (the API's escalate, or the bot by itself): the hand-off summary on it, its
    session escalated, and round-robin assignment when the merchant wants it. False when it was escalated already."""
    settings = settings or ai_settings_of(merchant_id=conversation.merchant_id)
    session = session or ChatSession.objects.filter(conversation=conversation).order_by("-started_at").first()
    handoff: dict[str, Any] = {"reason": reason, "intent": None, "slots": {}, "lastTurns": []}
    if session is not None:
        handoff.update(intent=session.current_intent or None, slots=session.slots)
        handoff["lastTurns"] = session_history(session)[-6:]
        session_end(session=session, at=timezone.now(), status=SessionStatus.ESCALATED)
    changed = conversation_ai_escalate(conversation=conversation, reason=reason, handoff=handoff)
    round_robin = changed and settings.escalation_assignment == EscalationAssignment.ROUND_ROBIN
    if (
        round_robin
        and conversation.assigned_to_id is None
        and (agent := conversation_assignee_next(merchant_id=conversation.merchant_id, roles=[Role.AGENT]))
    ):
        conversation_assign(conversation=conversation, user_id=agent)
    return changed


def _send(conversation: Conversation, text: str, idempotency_key: str | None) -> Message | None:
    since = timezone.now() - timedelta(hours=1)
    recent = Message.objects.filter(conversation=conversation, origin=MessageOrigin.BOT, created_at__gte=since)
    if recent.count() >= BOT_DMS_PER_HOUR:
        logger.info("conversation %s: %s bot DMs this hour; the bot stays silent", conversation.pk, BOT_DMS_PER_HOUR)
        return None
    try:
        return message_send(
            conversation=conversation, content=text, origin=MessageOrigin.BOT, idempotency_key=idempotency_key
        )
    except ApiError as exc:  # stored as failed where it got that far; the API caller sees the answer anyway
        logger.warning("bot DM in conversation %s not sent: %s", conversation.pk, exc.message)
        return None
