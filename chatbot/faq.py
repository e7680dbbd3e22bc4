"""A merchant's FAQ (CONTRACT.md "AI chatbot"): the answers the bot prefers over its own when a customer's message
is close enough to one of the questions. At most MAX_FAQ entries per merchant."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from chatbot.models import FAQ
from mktx.api.errors import InvalidInput
from mktx.iam.models import Merchant

MAX_FAQ = 500
MAX_QUESTION = 1_000
MAX_ANSWER = 4_000
FAQ_FIELDS = ("question", "answer", "intent")


def faqs_of(merchant_id: uuid.UUID) -> QuerySet[FAQ]:
    return FAQ.objects.filter(merchant_id=merchant_id).order_by("created_at", "id")


@transaction.atomic
def faq_create(*, merchant_id: uuid.UUID, question: str, answer: str, intent: str | None = "") -> FAQ:
    # the merchant's row is locked so that two creates at MAX_FAQ - 1 cannot both pass the count
    list(Merchant.objects.select_for_update().filter(pk=merchant_id).values_list("pk", flat=True))
    if FAQ.objects.filter(merchant_id=merchant_id).count() >= MAX_FAQ:
        raise InvalidInput("body", f"a merchant has at most {MAX_FAQ} FAQ entries; delete one first")
    return FAQ.objects.create(merchant_id=merchant_id, question=question, answer=answer, intent=intent or "")


def faq_update(*, faq: FAQ, changes: Mapping[str, Any]) -> FAQ:
    """Changes the fields given (`intent` None or "" clears it) and keeps the others."""
    fields = [name for name in FAQ_FIELDS if name in changes]
    for name in fields:
        value = changes[name]
        setattr(faq, name, (value or "") if name == "intent" else value)
    faq.save(update_fields=[*fields, "updated_at"])
    return faq


def faq_delete(*, faq: FAQ) -> None:
    faq.delete()
