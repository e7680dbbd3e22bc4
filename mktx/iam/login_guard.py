"""Password-guessing limits shared by the API login and the back-office login.

Two limits in the shared cache: attempts per client address (`MKTX_LOGIN_RATE_LIMIT`, a fixed window, the same
counter as the API's `LoginRateThrottle`) and failed attempts per email (`MKTX_LOGIN_FAILURE_LIMIT` in the
`MKTX_LOGIN_FAILURE_WINDOW` seconds that start at the email's first failure). An email over its limit is refused
before its password is checked, so a guesser learns nothing more until the window ends; a success does not reset
the count (an attacker holding one password cannot clear the lockout of the account they are guessing), and other
emails are not affected.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.http import HttpRequest

from mktx.api.throttling import client_address, failure_refund, failure_reserve, hit
from mktx.iam.models import normalize_email


def _email_key(email: str) -> str:
    # hashed: the cache holds no email addresses, and any input makes a short, safe key
    return "login-email:" + hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


def login_attempt_begin(email: str) -> float | None:
    """Count a password attempt for `email` before it is checked; seconds to wait (refuse it) when over the limit."""
    return failure_reserve(
        _email_key(email), limit=settings.MKTX_LOGIN_FAILURE_LIMIT, period=settings.MKTX_LOGIN_FAILURE_WINDOW
    )


def login_attempt_succeeded(email: str) -> None:
    """The attempt `login_attempt_begin` counted was the right password: it is not a failure."""
    failure_refund(_email_key(email), period=settings.MKTX_LOGIN_FAILURE_WINDOW)


def login_address_wait(request: HttpRequest) -> float | None:
    """Count one attempt from the request's client address; seconds to wait when it is over the limit."""
    limit, period = settings.MKTX_LOGIN_RATE_LIMIT
    allowed, state = hit(f"login:{client_address(request)}", limit=limit, period=period)
    return None if allowed else max(1.0, state.reset - time.time())
