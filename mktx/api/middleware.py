"""Middleware for the HTTP surfaces: request ids, the error envelope outside DRF, body size, rate-limit headers."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from mktx.api.errors import ErrorCode, error_body
from mktx.api.logging import reset_request_id, set_request_id

logger = logging.getLogger("mktx.api")

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JSON_PREFIXES = ("/api/", "/healthz", "/readyz")

Handler = Callable[[HttpRequest], HttpResponseBase]

_STATUS_CODES = {
    400: (ErrorCode.VALIDATION_ERROR, "Bad request"),
    401: (ErrorCode.UNAUTHORIZED, "Authentication required"),
    403: (ErrorCode.FORBIDDEN, "Forbidden"),
    404: (ErrorCode.RESOURCE_NOT_FOUND, "Resource not found"),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed"),
    413: (ErrorCode.VALIDATION_ERROR, "Request body too large"),
    429: (ErrorCode.RATE_LIMIT_EXCEEDED, "Rate limit exceeded"),
    503: (ErrorCode.SERVICE_UNAVAILABLE, "Service temporarily unavailable"),
}


def envelope_for_status(status: int, request_id: str) -> JsonResponse:
    code, message = _STATUS_CODES.get(status, (ErrorCode.INTERNAL_ERROR, "Internal server error"))
    if status < 500 and status not in _STATUS_CODES:
        code, message = ErrorCode.VALIDATION_ERROR, "Request failed"
    details = {"requestId": request_id} if status >= 500 else {}
    return JsonResponse(error_body(message, code, details), status=status)


def is_json_surface(path: str) -> bool:
    return path.startswith(_JSON_PREFIXES)


class RequestIdMiddleware:
    """Gives each request an id (the caller's `X-Request-ID` when it is safe), for logs and the response header."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _SAFE_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        return response


class ApiErrorEnvelopeMiddleware:
    """Errors that never reached DRF (unknown routes, Django's 404/405/500 pages) still answer the envelope."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code < 400 or not is_json_surface(request.path):
            return response
        if response.get("Content-Type", "").startswith("application/json") and _is_envelope(response):
            return response
        replacement = envelope_for_status(response.status_code, getattr(request, "request_id", "-"))
        for header in ("Retry-After", "WWW-Authenticate", "Allow"):
            if header in response:
                replacement[header] = response[header]
        return replacement


def _is_envelope(response: HttpResponseBase) -> bool:
    if not isinstance(response, HttpResponse):
        return False
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False and "code" in body


class BodySizeLimitMiddleware:
    """Refuses bodies over `MKTX_MAX_BODY_BYTES` before anything reads them (DRF's parsers do not check)."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if is_json_surface(request.path):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.MKTX_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse(
                    error_body(
                        "Request body too large",
                        ErrorCode.VALIDATION_ERROR,
                        {"field": "body", "reason": f"the body is {length} bytes; at most {limit} are accepted"},
                    ),
                    status=413,
                )
        return self.get_response(request)


class RateLimitHeadersMiddleware:
    """Adds `X-RateLimit-Limit/Remaining/Reset` to responses whose request was counted by a throttle."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        state = getattr(request, "mktx_rate_limit", None)
        if state is not None:
            response["X-RateLimit-Limit"] = str(state.limit)
            response["X-RateLimit-Remaining"] = str(state.remaining)
            response["X-RateLimit-Reset"] = str(state.reset)
        return response


class QueryStringNulMiddleware:
    """Refuses a NUL (`%00`) in the query string or path, whoever reads them later: PostgreSQL stores NUL in no
    text column, so a search or filter holding one would fail in SQL as a 500."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        field = _nul_field(request)
        if field is None:
            return self.get_response(request)
        reason = "must not contain a NUL character"
        if not is_json_surface(request.path):
            return HttpResponse(f"{field}: {reason}", status=400, content_type="text/plain")
        details = {"field": field, "reason": reason, "fields": {field: reason}}
        return JsonResponse(error_body(f"{field}: {reason}", ErrorCode.VALIDATION_ERROR, details), status=400)


def _nul_field(request: HttpRequest) -> str | None:
    if "\x00" in request.path:
        return "path"
    if "%00" not in request.META.get("QUERY_STRING", "") and "\x00" not in request.META.get("QUERY_STRING", ""):
        return None
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return name
    return None
