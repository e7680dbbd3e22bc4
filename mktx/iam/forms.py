"""The back-office login form, with the API login's password-guessing limits (mktx/iam/login_guard.py)."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from mktx.iam.login_guard import login_address_wait, login_attempt_begin, login_attempt_succeeded


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        wait = login_address_wait(self.request) if self.request is not None else None
        if wait is None and username:
            wait = login_attempt_begin(username)
        if wait is not None:
            raise ValidationError(
                "Too many login attempts. Try again in %(minutes)s minute(s).",
                code="throttled",
                params={"minutes": max(1, math.ceil(wait / 60))},
            )
        cleaned = super().clean()  # a wrong password raises: counted as a failure by login_attempt_begin
        if username:
            login_attempt_succeeded(username)
        return cleaned
