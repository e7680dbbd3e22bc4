"""The bot's place in who answers an inbound DM (webhooks_app/handlers.py decides, in one place): after a consent
word and the flows, with `enabled` and `autoReply`, the bot answers a customer's DM in an open conversation that is
not handed to people and not assigned to a person, through the outbound path as a bot DM. It replaces the away
message. The answer is worked out after the inbound transaction commits (a task: the engine and X may be slow)."""

from __future__ import annotations

from typing import Any

from chatbot import queue
from chatbot.ai_settings import ai_settings_of
from chatbot.bot import bot_answer, bot_may_answer
from contacts.models import Conversation, Message


def bot_takes(*, message: Message, conversation: Conversation) -> bool:
    """True when the bot will answer this DM (queued after the commit): nobody else answers it then."""
    settings = ai_settings_of(merchant_id=conversation.merchant_id)
    if not (settings.enabled and settings.auto_reply) or not bot_may_answer(conversation):
        return False
    queue.auto_reply_later(message.pk, inline=auto_reply)
    return True


def _key(message_id: Any) -> str:
    return f"bot:{message_id}"


def auto_reply(*, message_id: Any) -> str:
    """The task: answer the DM, once (a second run finds the answer sent under the message's key)."""
    message = (
        Message.objects.select_related("conversation__account", "conversation__contact").filter(pk=message_id).first()
    )
    if message is None:
        return "message gone"
    conversation = message.conversation
    if Message.objects.filter(account_id=message.account_id, idempotency_key=_key(message.pk)).exists():
        return "answered already"
    settings = ai_settings_of(merchant_id=conversation.merchant_id)
    if not (settings.enabled and settings.auto_reply) or not bot_may_answer(conversation):
        return "no longer the bot's to answer"
    answer = bot_answer(
        conversation=conversation,
        text=message.content,
        send=True,
        auto=True,
        idempotency_key=_key(message.pk),
        settings=settings,
    )
    return f"{answer.intent} ({answer.engine}){' escalated' if answer.requires_escalation else ''}"
