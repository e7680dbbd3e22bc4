"""The only code in the project that speaks HTTP to X."""

from mktx.xapi.client import RateLimit, SentDM, XAppClient, XClient, XUser, last_rate_limit
from mktx.xapi.errors import (
    XBadRequest,
    XError,
    XForbidden,
    XInvalidToken,
    XRateLimited,
    XServerError,
    XTimeout,
    XUnavailable,
)

__all__ = [
    "RateLimit",
    "SentDM",
    "XAppClient",
    "XBadRequest",
    "XClient",
    "XError",
    "XForbidden",
    "XInvalidToken",
    "XRateLimited",
    "XServerError",
    "XTimeout",
    "XUnavailable",
    "XUser",
    "last_rate_limit",
]
