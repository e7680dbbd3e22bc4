"""Chat sessions: the bot's memory of a conversation while it is active (CONTRACT.md "AI chatbot"). One active
session per conversation (a unique constraint); a session idle longer than the merchant's `sessionTimeoutMinutes`
ends, and the next message starts a new one. Turns are kept in order with the intent and engine that produced them."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chatbot.models import AISettings, ChatSession, ChatTurn, SessionStatus, TurnRole
from contacts.models import Conversation

HISTORY_TURNS = 20  # the turns an engine sees, newest last
# how long one answer may hold its session: more than the OpenAI engine's worst case (two 10 s tries and a 2 s wait)
# and the order lookup's 3 s; a holder that died lets go when it runs out
HOLD = timedelta(seconds=30)
HOLD_POLL_S = 0.1


def session_for(*, conversation: Conversation, settings: AISettings, now: datetime) -> ChatSession:
    """The conversation's active session, or a new one (the active one ended first when it sat idle too long)."""
    idle = timedelta(minutes=settings.session_timeout_minutes)
    active = ChatSession.objects.filter(conversation=conversation, status=SessionStatus.ACTIVE).first()
    if active is not None and active.last_activity_at >= now - idle:
        return active
    if active is not None:
        session_end(session=active, at=now)
    try:
        with transaction.atomic():
            return ChatSession.objects.create(
                merchant_id=conversation.merchant_id,
                conversation=conversation,
                started_at=now,
                last_activity_at=now,
            )
    except IntegrityError:  # another message of the conversation started one a moment ago
        return ChatSession.objects.get(conversation=conversation, status=SessionStatus.ACTIVE)


def session_hold(*, conversation: Conversation, settings: AISettings) -> ChatSession:
    """The conversation's session, held for this answer: a second answer of the same conversation (two DMs a second
    apart, in two workers) waits here for the first to finish, at most `HOLD`, and then reads what it carried (the
    slots, the pending question, the streak). Let go with `session_release`."""
    deadline = time.monotonic() + HOLD.total_seconds()
    while True:
        now = timezone.now()
        session = session_for(conversation=conversation, settings=settings, now=now)
        free = Q(answering_until__isnull=True) | Q(answering_until__lt=now)
        if ChatSession.objects.filter(free, pk=session.pk).update(answering_until=now + HOLD):
            session.refresh_from_db()
            if session.status == SessionStatus.ACTIVE:
                return session
            session_release(session)  # ended by the answer before: the next turn of this loop starts a new one
            continue
        if time.monotonic() >= deadline:  # the holder is gone or stuck: go on rather than leave the DM unanswered
            ChatSession.objects.filter(pk=session.pk).update(answering_until=now + HOLD)
            session.refresh_from_db()
            return session
        time.sleep(HOLD_POLL_S)


def session_release(session: ChatSession) -> None:
    ChatSession.objects.filter(pk=session.pk).update(answering_until=None)
    session.answering_until = None


def session_end(*, session: ChatSession, at: datetime, status: str = SessionStatus.ENDED) -> None:
    ChatSession.objects.filter(pk=session.pk, status=SessionStatus.ACTIVE).update(status=status, ended_at=at)
    session.status, session.ended_at = status, at


def session_history(session: ChatSession) -> list[dict[str, str]]:
    """The session's recent turns as an engine reads them, oldest first."""
    turns = list(session.turns.order_by("-id").values("role", "content")[:HISTORY_TURNS])
    return [{"role": t["role"], "content": t["content"]} for t in reversed(turns)]


def session_record(
    *,
    session: ChatSession,
    now: datetime,
    message: str,
    response: str,
    intent: str,
    confidence: float,
    slots: dict[str, str],
    engine: str,
    fallback_reason: str,
    low_confidence_streak: int,
) -> None:
    """The customer's turn and the bot's answer, and what the session carries to the next turn."""
    with transaction.atomic():
        ChatTurn.objects.bulk_create(
            [
                ChatTurn(session=session, role=TurnRole.USER, content=message, created_at=now),
                ChatTurn(
                    session=session,
                    role=TurnRole.ASSISTANT,
                    content=response,
                    intent=intent,
                    confidence=confidence,
                    engine=engine,
                    fallback_reason=fallback_reason[:200],
                    created_at=now,
                ),
            ]
        )
        ChatSession.objects.filter(pk=session.pk).update(
            current_intent=intent, slots=slots, low_confidence_streak=low_confidence_streak, last_activity_at=now
        )
    session.current_intent, session.slots = intent, slots
    session.low_confidence_streak, session.last_activity_at = low_confidence_streak, now


def conversation_context(conversation: Conversation, *, settings: AISettings) -> dict[str, Any]:
    """`GET /ai/conversations/{id}/context`: the latest session (active or not) with its turns; an active one idle
    past the timeout shows `ended` (the next message starts a new one)."""
    session = ChatSession.objects.filter(conversation=conversation).order_by("-started_at").first()
    if session is None:
        return {"sessionId": None, "context": [], "currentIntent": None, "slots": {}, "status": "none"}
    turns = session.turns.order_by("id").values_list("role", "content")
    status = session.status
    idle = timedelta(minutes=settings.session_timeout_minutes)
    if status == SessionStatus.ACTIVE and session.last_activity_at < timezone.now() - idle:
        status = SessionStatus.ENDED
    return {
        "sessionId": str(session.pk),
        "context": [{"role": role, "content": content} for role, content in turns],
        "currentIntent": session.current_intent or None,
        "slots": session.slots,
        "status": status,
    }
