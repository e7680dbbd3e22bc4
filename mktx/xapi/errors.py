"""Typed X API errors, parsed from both the v2 problem shape and the v1.1 `errors` shape."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mktx.api.errors import ApiError


class XError(Exception):
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        title: str = "",
        reset_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.title, self.reset_at = message, status, code, title, reset_at


class XInvalidToken(XError):
    """401 / code 89: the token is unknown, expired or revoked."""


class XRateLimited(XError):
    """429 / code 88: wait until `reset_at`."""


class XForbidden(XError):
    """403: final for this request (349 cannot DM this user, 226 looks automated); never retried blindly."""

    @property
    def reason(self) -> str:
        """What the refusal says, as the deliveries and flow steps name it: code 349 is a recipient who takes DMs
        only from accounts they follow (or have written to)."""
        refused = self.code == 349 or "cannot send messages to this user" in self.message.lower()
        return "recipient_not_accepting_dms" if refused else "x_forbidden"


class XBadRequest(XError):
    """Any other 4xx."""


class XServerError(XError):
    """5xx: retryable with backoff."""

    retryable = True


class XUnavailable(XError):
    """X could not be reached (connection refused, DNS, TLS)."""

    retryable = True


class XTimeout(XUnavailable):
    """No answer within the timeout. The call may or may not have taken effect."""


def _reason(body: Any) -> tuple[str, int | None, str]:
    """(message, v1.1-style code, title) from whatever shape X answered with."""
    if not isinstance(body, dict):
        return "", None, ""
    errors = body.get("errors")
    code: int | None = None
    message = ""
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        raw_code = first.get("code")
        code = (
            int(raw_code) if isinstance(raw_code, int) or (isinstance(raw_code, str) and raw_code.isdigit()) else None
        )
        message = str(first.get("message") or first.get("detail") or "")
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        message = detail if not message or message == body.get("title") else message
    return message or str(body.get("title") or ""), code, str(body.get("title") or "")


def reset_time(headers: Any, default_seconds: int = 60) -> datetime:
    raw = headers.get("x-rate-limit-reset") if headers is not None else None
    try:
        epoch = int(raw) if raw is not None else int(time.time()) + default_seconds
    except (TypeError, ValueError):
        epoch = int(time.time()) + default_seconds
    return datetime.fromtimestamp(epoch, tz=UTC)


def error_for(status: int, body: Any, headers: Any) -> XError:
    message, code, title = _reason(body)
    message = message or f"X answered HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "code": code, "title": title}
    if status == 429 or code == 88:
        return XRateLimited(message, reset_at=reset_time(headers), **kwargs)
    if status == 401 or code in (89, 32):
        return XInvalidToken(message, **kwargs)
    if status == 403:
        return XForbidden(message, **kwargs)
    if status >= 500:
        return XServerError(message, **kwargs)
    return XBadRequest(message, **kwargs)


def api_error_for(exc: XError, *, action: str = "X request") -> ApiError:
    """The API error a client sees for an X failure: 503 when X cannot be reached, 429 with the reset time when X
    rate-limits, else 502 `TWITTER_API_ERROR` naming X's reason. Never a 500."""
    from mktx.api.errors import ErrorCode, RateLimited, ServiceUnavailable, TwitterApiError

    details: dict[str, Any] = {"xStatus": exc.status, "xCode": exc.code, "reason": exc.message}
    if isinstance(exc, XRateLimited):
        reset = exc.reset_at or datetime.now(tz=UTC)
        retry_after = max(1, int(reset.timestamp() - time.time()))
        return RateLimited(
            f"{action} was rate-limited by X",
            details={**details, "resetAt": reset.strftime("%Y-%m-%dT%H:%M:%SZ"), "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(exc, XUnavailable):
        return ServiceUnavailable(
            f"{action} failed: X could not be reached", details=details, code=ErrorCode.TWITTER_API_ERROR
        )
    return TwitterApiError(f"{action} failed: {exc.message}", details=details)
