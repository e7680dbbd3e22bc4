"""The built-in engine (CONTRACT.md "AI chatbot"): offline intent classification with a calibrated confidence, slot
extraction, FAQ matching and the generic answers, in English and Vietnamese. No network, no model download: the
model is trained at first use from the catalogue in chatbot/data and kept for the process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatbot.nlu.answers import OrderStatus, detect_language, generic_answer, rephrase
from chatbot.nlu.classifier import predict
from chatbot.nlu.faq import FAQ_MATCH_MIN, FAQ_MATCH_STRONG, FaqEntry, FaqMatch, faq_match, faq_ranked
from chatbot.nlu.hours import hours_sentence
from chatbot.nlu.slots import extract_slots

INTENTS = (
    "order_status_query",
    "shipping_info",
    "return_refund",
    "product_inquiry",
    "pricing",
    "store_hours",
    "greeting",
    "thanks",
    "human_agent_request",
    "complaint",
    "unknown",
)
ESCALATING_INTENTS = frozenset({"human_agent_request", "complaint"})

__all__ = [
    "ESCALATING_INTENTS",
    "FAQ_MATCH_MIN",
    "FAQ_MATCH_STRONG",
    "INTENTS",
    "FaqEntry",
    "FaqMatch",
    "OrderStatus",
    "Understanding",
    "answer",
    "detect_language",
    "extract_slots",
    "faq_match",
    "faq_ranked",
    "hours_sentence",
    "rephrase",
    "understand",
]


@dataclass(frozen=True)
class Understanding:
    intent: str
    confidence: float
    slots: dict[str, str]
    language: str


def understand(text: str, *, expect_order_id: bool = False) -> Understanding:
    """`confidence` is the calibrated probability of `intent`. For `unknown` it is the model's belief that the
    message fits no intent, or (under the floor) the best intent's low probability. `expect_order_id`: the bot has
    just asked for an order number, so a bare "12345" is one."""
    intent, confidence = predict(text)
    return Understanding(
        intent=intent,
        confidence=round(confidence, 4),
        slots=extract_slots(text, expect_order_id=expect_order_id),
        language=detect_language(text),
    )


def answer(
    understanding: Understanding, *, order: OrderStatus | None = None, business_hours: dict[str, Any] | None = None
) -> str:
    """The generic answer; `business_hours` (the account's) answers `store_hours`."""
    if understanding.intent == "unknown":
        return rephrase(understanding.language)
    return generic_answer(
        understanding.intent, understanding.language, understanding.slots, order=order, business_hours=business_hours
    )
