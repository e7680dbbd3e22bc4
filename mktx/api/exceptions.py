"""The DRF exception handler: every error a DRF view raises leaves as `{success: false, error, code, details}`."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from mktx.api.errors import ApiError, ErrorCode, ServiceUnavailable, error_body
from mktx.api.logging import current_request_id
from mktx.api.middleware import is_json_surface

logger = logging.getLogger("mktx.api")

_DRF_CODES: list[tuple[type[drf.APIException], ErrorCode, str]] = [
    (drf.NotAuthenticated, ErrorCode.UNAUTHORIZED, "Authentication required"),
    (drf.AuthenticationFailed, ErrorCode.UNAUTHORIZED, "Invalid or expired token"),
    (drf.PermissionDenied, ErrorCode.FORBIDDEN, "You do not have permission to perform this action"),
    (drf.NotFound, ErrorCode.RESOURCE_NOT_FOUND, "Resource not found"),
    (drf.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED, ""),
    (drf.Throttled, ErrorCode.RATE_LIMIT_EXCEEDED, "Rate limit exceeded"),
    (drf.UnsupportedMediaType, ErrorCode.VALIDATION_ERROR, ""),
    (drf.NotAcceptable, ErrorCode.VALIDATION_ERROR, ""),
    (drf.ParseError, ErrorCode.VALIDATION_ERROR, ""),
    (drf.ValidationError, ErrorCode.VALIDATION_ERROR, ""),
]


def flatten_errors(detail: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error detail as (path, message) pairs: `schedule.startAt`, `conditions[1].operator`."""
    if isinstance(detail, dict):
        pairs: list[tuple[str, str]] = []
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                path = prefix or "body"
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            pairs.extend(flatten_errors(value, path))
        return pairs
    if isinstance(detail, list):
        pairs = []
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                pairs.extend(flatten_errors(item, f"{prefix}[{index}]"))
            else:
                pairs.append((prefix or "body", str(item)))
        return pairs
    return [(prefix or "body", str(detail))]


def validation_details(detail: Any) -> tuple[str, dict[str, Any]]:
    pairs = flatten_errors(detail)
    if not pairs:
        return "Validation failed", {}
    fields: dict[str, str] = {}
    for path, message in pairs:
        fields.setdefault(path, message)
    field, reason = pairs[0]
    return f"Validation failed: {field}: {reason}", {"field": field, "reason": reason, "fields": fields}


# The database refusing or dropping connections (down, restarting, out of connections, a lock wait that ran out):
# the request may succeed if repeated, and the connection is opened again on the next request. Not a 500.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: Exception) -> ServiceUnavailable:
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailable(
        "Service temporarily unavailable: the database cannot be reached; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class DatabaseUnavailableMiddleware:
    """The same 503 for views outside DRF (the webhook receiver, the admin) when the database is unavailable."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        error = database_unavailable(exception)
        if is_json_surface(request.path):
            response: HttpResponse = JsonResponse(error_body(error.message, error.code), status=error.status_code)
        else:
            response = HttpResponse(error.message, status=error.status_code, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def _convert_django_exception(exc: Exception) -> Exception:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return database_unavailable(exc)
    if isinstance(exc, Http404):
        return drf.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return drf.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        return drf.ValidationError(as_serializer_error(exc))
    return exc


def _wait(exc: drf.Throttled) -> int | None:
    wait = getattr(exc, "wait", None)
    return None if wait is None else math.ceil(wait)


def _describe(exc: drf.APIException) -> tuple[ErrorCode, str, dict[str, Any]]:
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.details
    if isinstance(exc, drf.ValidationError):
        message, details = validation_details(exc.detail)
        return ErrorCode.VALIDATION_ERROR, message, details
    for cls, code, default in _DRF_CODES:
        if isinstance(exc, cls):
            message = default or str(exc.detail)
            extra: dict[str, Any] = {}
            if isinstance(exc, drf.ParseError):
                extra = {"field": "body", "reason": str(exc.detail)}
            elif isinstance(exc, (drf.UnsupportedMediaType, drf.NotAcceptable)):
                header = "Content-Type" if isinstance(exc, drf.UnsupportedMediaType) else "Accept"
                extra = {"field": header, "reason": str(exc.detail)}
            elif isinstance(exc, drf.AuthenticationFailed) and str(exc.detail) != message:
                extra = {"reason": str(exc.detail)}
            elif isinstance(exc, drf.Throttled) and _wait(exc) is not None:
                extra = {"retryAfter": _wait(exc)}
            return code, message, extra
    return ErrorCode.VALIDATION_ERROR if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR, str(exc.detail), {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    exc = _convert_django_exception(exc)
    set_rollback()
    if not isinstance(exc, drf.APIException):
        request_id = current_request_id()
        logger.exception("Unhandled error while serving the request (request id %s)", request_id)
        response = Response(
            error_body("Internal server error", ErrorCode.INTERNAL_ERROR, {"requestId": request_id}),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
        response.enveloped = True  # type: ignore[attr-defined]
        return response

    code, message, details = _describe(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        headers.update(exc.headers)
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if isinstance(exc, drf.Throttled) and _wait(exc) is not None:
        headers["Retry-After"] = str(_wait(exc))
    response = Response(error_body(message, code, details), status=exc.status_code, headers=headers)
    response.enveloped = True  # type: ignore[attr-defined]
    return response
