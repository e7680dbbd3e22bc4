"""X's side of the API: the CRC challenge and the signed event deliveries. No JWT, no rate limit; answered fast."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from mktx.api.errors import ErrorCode, error_body
from mktx.api.parsers import MAX_DEPTH, too_deep
from webhooks_app.parser import PayloadError, without_nul
from webhooks_app.services import inbound_events_store
from webhooks_app.signatures import crc_response_token, is_valid_signature
from webhooks_app.webhook_schema import CrcVerifySchema, TwitterWebhookSchema, XSideSchema

logger = logging.getLogger("mktx.webhooks")

View = TypeVar("View", bound=Callable[..., HttpResponse])


def documented_by(schema: type[XSideSchema]) -> Callable[[View], View]:
    """Shows a plain view to drf-spectacular, which documents only DRF views (it reads `view.cls`): the view is
    served exactly as it is, and `schema`'s methods describe it (webhooks_app/webhook_schema.py)."""

    def attach(view: View) -> View:
        view.cls = schema  # type: ignore[attr-defined]
        view.initkwargs = {}  # type: ignore[attr-defined]
        return view

    return attach


def _error(status: int, message: str, code: str, details: dict[str, object] | None = None) -> JsonResponse:
    return JsonResponse(error_body(message, code, details), status=status)


def _not_configured() -> JsonResponse:
    return _error(503, "Webhooks are not configured: X_CONSUMER_SECRET is unset", ErrorCode.SERVICE_UNAVAILABLE)


def _crc(request: HttpRequest) -> HttpResponse:
    secret = settings.X_CONSUMER_SECRET
    if not secret:
        return _not_configured()
    token = request.GET.get("crc_token", "")
    answer = crc_response_token(secret, token)
    if answer is None:
        return _error(
            400,
            "crc_token is missing or not token-shaped",
            ErrorCode.VALIDATION_ERROR,
            {"field": "crc_token", "reason": "16 to 128 characters of A-Z a-z 0-9 + / = _ -"},
        )
    return JsonResponse({"response_token": answer})


def _content_length(request: HttpRequest) -> int | None:
    """The declared body length, 0 when absent; None when it is not a whole number (`Content-Length: abc`)."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    return int(raw) if raw.isascii() and raw.isdigit() else None


@documented_by(CrcVerifySchema)
@require_GET
def crc_verify(request: HttpRequest) -> HttpResponse:
    return _crc(request)


@documented_by(TwitterWebhookSchema)
@csrf_exempt
@require_http_methods(["GET", "POST"])
def twitter_webhook(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _crc(request)
    secret = settings.X_CONSUMER_SECRET
    if not secret:
        return _not_configured()
    limit = settings.MKTX_WEBHOOK_MAX_BYTES
    length = _content_length(request)
    if length is None:
        reason = "must be a whole number of bytes"
        return _error(
            400, f"Content-Length: {reason}", ErrorCode.VALIDATION_ERROR, {"field": "Content-Length", "reason": reason}
        )
    if length > limit:
        return _error(413, "Webhook body too large", ErrorCode.VALIDATION_ERROR, {"field": "body", "limit": limit})
    body = request.body
    if not is_valid_signature(secret, body, request.headers.get("x-twitter-webhooks-signature")):
        logger.warning("webhook delivery refused: missing or wrong signature")
        return _error(401, "Missing or invalid x-twitter-webhooks-signature", ErrorCode.UNAUTHORIZED)
    try:
        text = body.decode()
        if too_deep(text) is not None:  # X never nests so deep; json.loads would raise RecursionError
            raise PayloadError(f"JSON nests more than {MAX_DEPTH} levels deep")
        payload = json.loads(text)
        if "\\u0000" in text:  # stored and processed without the NUL: PostgreSQL holds none, X is not refused
            payload = without_nul(payload)
            text = json.dumps(payload)
        received = inbound_events_store(body=payload, raw=text)
    except (ValueError, RecursionError, PayloadError) as exc:  # UnicodeDecodeError is a ValueError
        return _error(400, "The body is not an X webhook payload", ErrorCode.VALIDATION_ERROR, {"reason": str(exc)})
    return JsonResponse({"success": True, "data": {"received": received}})
