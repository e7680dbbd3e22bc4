"""django-q2 tasks of chatbot: thin. They take ids, call one function, and are safe to run twice."""

from __future__ import annotations

from chatbot import autoreply


def auto_reply(message_id: str) -> str:
    return autoreply.auto_reply(message_id=message_id)
