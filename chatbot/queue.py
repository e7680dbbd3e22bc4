"""The one module of chatbot that queues tasks (ARCHITECTURE.md: `queue.py`). A reply that could not be queued (the
broker down) is answered inline, after the commit: the inbound task that decided it already runs in a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from mktx.queue import task_enqueue

AUTO_REPLY_FUNC = "chatbot.tasks.auto_reply"


def auto_reply_later(message_id: Any, *, inline: Callable[..., Any]) -> None:
    """The bot answers this inbound DM once the current transaction has committed (never inside it: the engine and
    X may take seconds); `inline(message_id=...)` when the broker is down."""

    def enqueue() -> None:
        if not task_enqueue(AUTO_REPLY_FUNC, str(message_id), task_name="bot-reply"):
            inline(message_id=message_id)

    transaction.on_commit(enqueue)
