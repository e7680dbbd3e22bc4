"""The OpenAI-compatible engine (CONTRACT.md "AI chatbot"; issue 14, item 4): the only code that calls a model.

`openai_reply` sends the merchant's system prompt with a fixed JSON-answer instruction and the FAQ as context, then
the session's recent turns (trimmed from the oldest to a budget derived from `max_tokens`), then the new message, to
the `openai` client on `OPENAI_BASE_URL` with a 10 s timeout and one retry (the client's defaults are 600 s and two).
The answer is validated before use; anything wrong raises `AIServiceError` with a `reason` (502 on the API; when
auto-replying the caller answers with the built-in engine instead). Token usage is counted per merchant and UTC day.
Neither the API key nor the prompt is ever logged: the model, the latency, the usage and a failure's reason are.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import openai
from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from openai.types.chat import ChatCompletionMessageParam
from rest_framework import status

from chatbot import nlu
from chatbot.models import AISettings, TokenUsage
from mktx.api.errors import ApiError, ErrorCode

logger = logging.getLogger(__name__)

INTENTS = nlu.INTENTS  # the contract's intents, one list for both engines
SLOT_KEYS = ("orderId", "email", "phone")
REASONS = ("timeout", "rate_limited", "invalid_response", "unavailable", "not_configured")

TIMEOUT_SECONDS = 10.0
MAX_RETRIES = 1
RESPONSE_MAX_CHARS = 1_000
SLOT_MAX_CHARS = 254
FAQ_MAX_ENTRIES = 25
FAQ_MAX_CHARS = 6_000
# the whole prompt (system, FAQ, history, new message) in estimated tokens: a multiple of the answer's own budget
PROMPT_BUDGET_PER_ANSWER_TOKEN = 4
PROMPT_BUDGET_MIN = 2_000

DEFAULT_SYSTEM_PROMPT = (
    "You are the friendly customer-service assistant of an online shop, answering customers in direct messages on "
    "X. Be brief, polite and helpful, answer in the customer's language (English or Vietnamese), never invent order "
    "details, prices or policies you were not given, and offer a person from the team when you cannot help."
)
ANSWER_INSTRUCTION = (
    "Answer ONLY with one JSON object, no other text, of this shape: "
    '{"intent": one of ' + ", ".join(f'"{intent}"' for intent in INTENTS) + ", "
    '"confidence": a number from 0 to 1 (how sure you are of the intent), '
    f'"response": your reply to the customer (plain text, at most {RESPONSE_MAX_CHARS} characters), '
    '"slots": an object with only the keys the customer gave among "orderId", "email", "phone", as strings}. '
    'Use "human_agent_request" when the customer asks for a person, "complaint" when they are unhappy, and '
    '"unknown" when nothing fits.'
)

MESSAGES = {
    "timeout": "The AI service did not answer in time",
    "rate_limited": "The AI service is rate limiting requests",
    "invalid_response": "The AI service gave an answer that could not be used",
    "unavailable": "The AI service is unavailable",
    "not_configured": "The AI service is not configured on this server (OPENAI_API_KEY)",
}


class AIServiceError(ApiError):
    status_code = status.HTTP_502_BAD_GATEWAY
    code = ErrorCode.AI_SERVICE_ERROR
    message = "AI service error"

    def __init__(self, reason: str, *, details: Mapping[str, Any] | None = None) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(MESSAGES[reason], details={"reason": reason, **(details or {})})


@dataclass(frozen=True)
class EngineReply:
    intent: str
    confidence: float
    response: str
    slots: dict[str, str]
    engine: str = "openai"


def openai_reply(
    *, settings: AISettings, history: list[dict[str, str]], message: str, faq: Sequence[Any]
) -> EngineReply:
    """The model's answer to `message`, after `history` (the session's earlier turns, oldest first; the new message
    is not in it). `faq` holds entries with `question` and `answer` (FAQ rows, the built-in engine's entries, or
    mappings). Raises AIServiceError."""
    api_key = django_settings.OPENAI_API_KEY
    if not api_key:
        logger.warning("openai engine not configured (no OPENAI_API_KEY) merchant=%s", settings.merchant_id)
        raise AIServiceError("not_configured")
    # the client's own retry would wait out a 429's Retry-After (up to a minute) in a worker: ours waits a moment
    client = _client(api_key, django_settings.OPENAI_BASE_URL or None, TIMEOUT_SECONDS, 0)
    messages = prompt_messages(settings=settings, history=history, message=message, faq=faq)
    started = time.monotonic()
    try:
        completion = _create(client, settings, messages)
        reply = _parse(_content(completion))
    except AIServiceError as error:
        _failed(settings, error, started, details=error.details)
        raise
    except openai.OpenAIError as error:
        failure = AIServiceError(_reason(error), details=_status_details(error))
        _failed(settings, failure, started, details=failure.details, cause=error)
        raise failure from error
    prompt_tokens, completion_tokens = _usage(completion)
    logger.info(
        "openai reply merchant=%s model=%s latency_ms=%d prompt_tokens=%d completion_tokens=%d intent=%s",
        settings.merchant_id,
        settings.model,
        (time.monotonic() - started) * 1000,
        prompt_tokens,
        completion_tokens,
        reply.intent,
    )
    token_usage_record(
        merchant_id=settings.merchant_id, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    return reply


def prompt_messages(
    *, settings: AISettings, history: Sequence[Mapping[str, str]], message: str, faq: Sequence[Any]
) -> list[dict[str, str]]:
    system = "\n\n".join(
        part
        for part in (settings.system_prompt.strip() or DEFAULT_SYSTEM_PROMPT, ANSWER_INSTRUCTION, _faq_context(faq))
        if part
    )
    head = [{"role": "system", "content": system}]
    tail = [{"role": "user", "content": message}]
    left = prompt_budget(settings.max_tokens) - estimate_tokens(system) - estimate_tokens(message)
    kept: list[dict[str, str]] = []
    for turn in reversed(history):  # newest first: the oldest turns are the ones left out
        role, content = turn.get("role"), turn.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str) or not content.strip():
            continue
        left -= estimate_tokens(content)
        if left < 0:
            break
        kept.append({"role": role, "content": content})
    return head + kept[::-1] + tail


def prompt_budget(max_tokens: int) -> int:
    """The whole prompt's budget in estimated tokens for a merchant's `max_tokens` (the answer's own limit)."""
    return max(PROMPT_BUDGET_MIN, PROMPT_BUDGET_PER_ANSWER_TOKEN * max_tokens)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def token_usage_record(*, merchant_id: uuid.UUID, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    """One request and its tokens on the merchant's row of the (UTC) day, created at the first request."""
    day = timezone.now().date()
    increments = {
        "requests": F("requests") + 1,
        "prompt_tokens": F("prompt_tokens") + prompt_tokens,
        "completion_tokens": F("completion_tokens") + completion_tokens,
    }
    rows = TokenUsage.objects.filter(merchant_id=merchant_id, day=day)
    with transaction.atomic():
        if rows.update(**increments):
            return
        try:
            with transaction.atomic():  # a savepoint: a concurrent first request may create the row meanwhile
                TokenUsage.objects.create(
                    merchant_id=merchant_id,
                    day=day,
                    requests=1,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
        except IntegrityError:
            rows.update(**increments)


RETRYABLE = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
RETRY_WAIT_MAX = 2.0  # seconds before the one retry, whatever a 429's Retry-After asks


def _create(client: openai.OpenAI, settings: AISettings, messages: list[dict[str, str]]) -> Any:
    """The chat completion, with MAX_RETRIES retries of a timeout, a connection error, a 429 or a 5xx."""
    for attempt in range(MAX_RETRIES + 1):
        try:
            return client.chat.completions.create(
                model=settings.model,
                messages=cast(list[ChatCompletionMessageParam], messages),  # role/content dicts, as the API takes
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                response_format={"type": "json_object"},
            )
        except RETRYABLE as error:
            if attempt >= MAX_RETRIES:
                raise
            time.sleep(min(_retry_after(error), RETRY_WAIT_MAX))
    raise AssertionError("unreachable")  # the loop returns or raises


def _retry_after(error: openai.OpenAIError) -> float:
    if isinstance(error, openai.APIStatusError):
        value = error.response.headers.get("retry-after", "")
        if value.strip().isdigit():
            return float(value)
    return 0.5


@lru_cache(maxsize=8)
def _client(api_key: str, base_url: str | None, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def _faq_context(faq: Sequence[Any]) -> str:
    lines: list[str] = []
    size = 0
    for entry in faq[:FAQ_MAX_ENTRIES]:
        question, answer = _field(entry, "question"), _field(entry, "answer")
        if not question or not answer:
            continue
        pair = f"Q: {question}\nA: {answer}"
        if size + len(pair) > FAQ_MAX_CHARS:
            break
        lines.append(pair)
        size += len(pair)
    if not lines:
        return ""
    return "The shop's FAQ (prefer these answers when they fit):\n\n" + "\n\n".join(lines)


def _field(entry: Any, name: str) -> str:
    value = entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)
    return value.strip() if isinstance(value, str) else ""


def _content(completion: Any) -> str:
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        raise AIServiceError("invalid_response", details={"problem": "no choice"}) from None
    if not isinstance(content, str):
        raise AIServiceError("invalid_response", details={"problem": "no content"})
    return content


def _parse(content: str) -> EngineReply:
    try:
        answer = json.loads(content)
    except ValueError:
        raise AIServiceError("invalid_response", details={"problem": "not JSON"}) from None
    if not isinstance(answer, dict):
        raise _shape("not an object")
    intent = answer.get("intent")
    if not isinstance(intent, str) or intent.strip().lower() not in INTENTS:
        raise _shape("intent")
    confidence = answer.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        raise _shape("confidence")
    response = answer.get("response")
    if not isinstance(response, str) or not response.strip():
        raise _shape("response")
    return EngineReply(
        intent=intent.strip().lower(),
        confidence=min(1.0, max(0.0, float(confidence))),
        response=_clip(response.strip()),
        slots=_slots(answer.get("slots")),
    )


def _slots(raw: object) -> dict[str, str]:
    if raw is None:  # models leave out an empty object
        return {}
    if not isinstance(raw, dict) or any(key not in SLOT_KEYS for key in raw):
        raise _shape("slots")
    slots: dict[str, str] = {}
    for key, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # a slot the customer did not give
        if not isinstance(value, str) or len(value.strip()) > SLOT_MAX_CHARS:
            raise _shape(f"slots.{key}")
        slots[key] = value.strip()
    return slots


def _shape(problem: str) -> AIServiceError:
    return AIServiceError("invalid_response", details={"problem": problem})


def _clip(text: str) -> str:
    if len(text) <= RESPONSE_MAX_CHARS:
        return text
    cut = text[: RESPONSE_MAX_CHARS - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > RESPONSE_MAX_CHARS // 2 else cut).rstrip() + "…"


def _reason(error: openai.OpenAIError) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.RateLimitError):
        return "rate_limited"
    if isinstance(error, openai.APIResponseValidationError):
        return "invalid_response"
    return "unavailable"  # other statuses (401, 5xx, ...), connection errors


def _status_details(error: openai.OpenAIError) -> dict[str, Any]:
    if not isinstance(error, openai.APIStatusError):
        return {}
    details: dict[str, Any] = {"status": error.status_code}
    retry_after = error.response.headers.get("retry-after")
    if isinstance(error, openai.RateLimitError) and retry_after and retry_after.strip().isdigit():
        details["retryAfter"] = int(retry_after)
    return details


def _failed(
    settings: AISettings,
    error: AIServiceError,
    started: float,
    *,
    details: Mapping[str, Any],
    cause: Exception | None = None,
) -> None:
    logger.warning(
        "openai reply failed merchant=%s model=%s latency_ms=%d reason=%s details=%s error=%s",
        settings.merchant_id,
        settings.model,
        (time.monotonic() - started) * 1000,
        error.reason,
        dict(details),
        type(cause).__name__ if cause else "",
    )
    token_usage_record(merchant_id=settings.merchant_id)  # the request counts; no tokens were used


def _usage(completion: Any) -> tuple[int, int]:
    usage = getattr(completion, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", 0)
    completion_tokens = getattr(usage, "completion_tokens", 0)
    return (
        prompt_tokens if isinstance(prompt_tokens, int) and prompt_tokens > 0 else 0,
        completion_tokens if isinstance(completion_tokens, int) and completion_tokens > 0 else 0,
    )
