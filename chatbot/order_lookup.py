"""The order status from the merchant's own system (CONTRACT.md "AI chatbot", issue 14 item 3).

With `orderLookupUrl` set, the bot POSTs `{"orderId", "contact": {"id", "username"}}` there, signed with
`X-Mktx-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes with orderLookupSecret>`, through the outbound
address guard (mktx/egress.py: a public address only, 3 s for the whole exchange, 64 KB at most), and reads
`{"status", "shippedAt"?, "expectedAt"?, "trackingUrl"?}` from a 2xx answer into chatbot.nlu's OrderStatus. Anything
else is a failure with a reason, never an exception: the bot then says it will check and hands the conversation to a
person.

The merchant's server verifies a request by computing the same HMAC over the raw body it received and comparing
it in constant time with the header's hex. The log names the order and the outcome, never the secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from chatbot.ai_settings import order_lookup_secret
from chatbot.models import AISettings
from chatbot.nlu import OrderStatus  # the built-in engine's, which its answers name
from mktx.accounts.crypto import UndecryptableToken
from mktx.egress import EgressFailed, guarded_request

logger = logging.getLogger("mktx.chatbot")

SIGNATURE_HEADER = "X-Mktx-Signature"
MAX_BYTES = 64_000
DEADLINE_SECONDS = 3
MAX_STATUS = 200
MAX_TRACKING_URL = 500


@dataclass(frozen=True)
class LookupResult:
    """`order` when the merchant answered; otherwise `reason` says why not (for logs and the hand-off)."""

    order: OrderStatus | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.order is not None


def signature(body: bytes, secret: str) -> str:
    """The header's value for `body`: what the merchant's server computes again to trust the request."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def order_lookup(*, settings: AISettings, order_id: str, contact: Any) -> LookupResult:
    """Asks the merchant's lookup URL for the order's status; a failure (no URL, the guard's refusal, a deadline,
    a non-2xx, a body that is not the documented JSON) is a result with its reason."""
    result = _lookup(settings, order_id, contact)
    if result.order is not None:
        logger.info("order lookup %r for merchant %s: %s", order_id, settings.merchant_id, result.order.status)
    else:
        logger.info("order lookup %r for merchant %s failed: %s", order_id, settings.merchant_id, result.reason)
    return result


def _lookup(settings: AISettings, order_id: str, contact: Any) -> LookupResult:
    if not settings.order_lookup_url:
        return LookupResult(reason="not_configured")
    try:
        secret = order_lookup_secret(settings)
    except UndecryptableToken:
        return LookupResult(reason="secret_unreadable")
    payload = {"orderId": order_id, "contact": {"id": str(contact.pk), "username": contact.username}}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "mktx-order-lookup/1",
        SIGNATURE_HEADER: signature(body, secret),
    }
    try:
        response = guarded_request(
            "POST",
            settings.order_lookup_url,
            max_bytes=MAX_BYTES,
            headers=headers,
            body=body,
            deadline_seconds=DEADLINE_SECONDS,
        )
    except EgressFailed as exc:
        timed_out = "deadline" in exc.reason or "timed out" in exc.reason.lower()
        return LookupResult(reason=f"timeout: {exc.reason}" if timed_out else f"unreachable: {exc.reason}")
    if not 200 <= response.status < 300:
        return LookupResult(reason=f"http_{response.status}")
    return _parse(response.body)


def _parse(raw: bytes) -> LookupResult:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return LookupResult(reason="invalid_json")
    if not isinstance(data, dict):
        return LookupResult(reason="invalid_reply: not an object")
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        return LookupResult(reason="invalid_reply: no status")
    order = OrderStatus(
        status=status.strip()[:MAX_STATUS],
        shipped_at=_day(data.get("shippedAt")),
        expected_at=_day(data.get("expectedAt")),
        tracking_url=_tracking_url(data.get("trackingUrl")),
    )
    return LookupResult(order=order)


def _day(value: Any) -> date | None:
    """`2026-01-15` or an ISO datetime (its own calendar day); anything else is left out rather than guessed."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = parse_datetime(value)
        if moment is not None:
            return moment.date()
        return parse_date(value)
    except ValueError:  # well formed, not a real day (2026-02-30)
        return None


def _tracking_url(value: Any) -> str:
    """An http(s) link to show the customer; "" for anything else."""
    if not isinstance(value, str) or len(value) > MAX_TRACKING_URL:
        return ""
    value = value.strip()
    if not value.lower().startswith(("https://", "http://")) or any(c.isspace() for c in value):
        return ""
    return value
