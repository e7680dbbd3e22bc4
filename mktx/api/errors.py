"""Error codes of the API (api-reference.md, "Common Error Codes") and the exceptions services raise with them.

Services raise these; the exception handler turns them into the error envelope. Anything a view, a task or a
management command can report to a person goes through one of these classes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    DUPLICATE_RESOURCE = "DUPLICATE_RESOURCE"
    RESOURCE_IN_USE = "RESOURCE_IN_USE"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    TWITTER_API_ERROR = "TWITTER_API_ERROR"
    AI_SERVICE_ERROR = "AI_SERVICE_ERROR"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


def error_body(message: str, code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"success": False, "error": message, "code": str(code), "details": details or {}}


class ApiError(APIException):
    """An error with its HTTP status, code, message and details, ready for the envelope."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: ErrorCode = ErrorCode.VALIDATION_ERROR
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
        code: ErrorCode | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details or {}
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers = headers or {}
        super().__init__(detail=self.message)


class InvalidInput(ApiError):
    """A request value is wrong: `field` names it as the client spelled it (`conditions[1].operator`)."""

    def __init__(self, field: str, reason: str, *, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(
            f"{field}: {reason}",
            details={"field": field, "reason": reason, "fields": {field: reason}},
            status_code=status_code,
            code=ErrorCode.VALIDATION_ERROR,
        )


class NotFoundError(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.RESOURCE_NOT_FOUND
    message = "Resource not found"


class DuplicateResource(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.DUPLICATE_RESOURCE
    message = "Resource already exists"


class ResourceInUse(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.RESOURCE_IN_USE
    message = "Resource is in use"


class Forbidden(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    code = ErrorCode.FORBIDDEN
    message = "You do not have permission to perform this action"


class Unauthorized(ApiError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = ErrorCode.UNAUTHORIZED
    message = "Authentication required"


class RateLimited(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = ErrorCode.RATE_LIMIT_EXCEEDED
    message = "Rate limit exceeded"


class TwitterApiError(ApiError):
    status_code = status.HTTP_502_BAD_GATEWAY
    code = ErrorCode.TWITTER_API_ERROR
    message = "X API error"


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = ErrorCode.SERVICE_UNAVAILABLE
    message = "Service temporarily unavailable"
