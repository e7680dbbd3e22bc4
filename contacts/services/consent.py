"""Consent at send time: single-word keywords opt a contact out of (or back into) marketing sends, each change
recorded in the consent ledger and confirmed once to the contact."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.models import ConsentAction, ConsentEvent, Contact, Conversation, Message
from mktx.accounts.models import Account
from mktx.queue import task_enqueue

OPT_OUT_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
OPT_IN_KEYWORDS = frozenset({"start", "unstop"})
OPT_OUT_CONFIRMATION = "You are unsubscribed from our marketing messages. Reply START to subscribe again."
OPT_IN_CONFIRMATION = "You are subscribed to our messages again. Reply STOP to unsubscribe."


def consent_keyword(text: str, account: Account) -> tuple[str, str] | None:
    """(action, keyword) when the whole message is one consent keyword, in any case."""
    word = text.strip().casefold()
    if not word or " " in word:
        return None
    own = {str(k).strip().casefold() for k in (account.opt_out_keywords or [])}
    if word in OPT_OUT_KEYWORDS or word in own:
        return ConsentAction.OPT_OUT, word
    if word in OPT_IN_KEYWORDS:
        return ConsentAction.OPT_IN, word
    return None


def contact_consent_set(
    *, contact: Contact, action: str, keyword: str = "", message: Message | None = None, source: str = "keyword"
) -> ConsentEvent | None:
    """Record a change of consent; None when the contact is already in that state (nothing to confirm)."""
    opted_out = action == ConsentAction.OPT_OUT
    changed = Contact.objects.filter(pk=contact.pk, opted_out=not opted_out).update(
        opted_out=opted_out, opted_out_at=timezone.now() if opted_out else None
    )
    if not changed:
        return None
    contact.opted_out = opted_out
    return ConsentEvent.objects.create(
        merchant_id=contact.merchant_id, contact=contact, action=action, keyword=keyword, message=message, source=source
    )


def consent_confirm_later(*, event: ConsentEvent, conversation: Conversation) -> None:
    """Queue the one confirmation of this change, sent after commit through the outbound path."""
    text = OPT_OUT_CONFIRMATION if event.action == ConsentAction.OPT_OUT else OPT_IN_CONFIRMATION
    send_system_message_later(conversation_id=conversation.pk, text=text, key=f"consent:{event.pk}")


def send_system_message_later(*, conversation_id: Any, text: str, key: str) -> None:
    def enqueue() -> None:
        if not task_enqueue(
            "contacts.tasks.send_system_message", str(conversation_id), text, key, task_name="system-message"
        ):  # the broker is down: this already runs in a worker (inbound processing), so send it here
            from contacts.services.outbound import system_message_send

            system_message_send(conversation_id=conversation_id, text=text, idempotency_key=key)

    transaction.on_commit(enqueue)
