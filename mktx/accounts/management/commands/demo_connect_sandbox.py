"""`make run`: give the demo merchant a connected X account in the local sandbox, and a customer to play."""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import account_client, account_connect, account_disconnect
from mktx.api.errors import ApiError
from mktx.iam.models import User
from mktx.xapi import XError


def _control(path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(settings.X_API_BASE_URL + path, json=body, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _wait_for_sandbox(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(settings.X_API_BASE_URL + "/_sandbox/deliveries", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise CommandError(f"The X sandbox does not answer at {settings.X_API_BASE_URL}")


class Command(BaseCommand):
    help = "DEBUG only: connect a sandbox X account (@goodgo_shop) to the demo merchant, with a demo customer."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_connect_sandbox is for development (DEBUG on) only")
        user = User.objects.filter(email=settings.MKTX_DEMO_EMAIL).select_related("merchant").first()
        if user is None or user.merchant is None:
            raise CommandError("No demo merchant: run `manage.py ensure_demo` first")
        _wait_for_sandbox()
        account = Account.objects.filter(merchant=user.merchant, status=AccountStatus.ACTIVE).first()
        if account is not None:
            try:
                account_client(account).get_me()
            except XError:  # the sandbox forgot it (its state file was removed): start over
                account_disconnect(account=account)
                account = None
        if account is None:
            shop = _control("/_sandbox/users", {"username": "goodgo_shop", "name": "GoodGo Official"})
            try:
                account = account_connect(
                    merchant_id=user.merchant.id,
                    oauth_token=shop["oauthToken"],
                    oauth_token_secret=shop["oauthTokenSecret"],
                )
            except ApiError as exc:
                raise CommandError(f"Connecting the sandbox account failed: {exc.message} {exc.details}") from None
        customer = _control("/_sandbox/users", {"username": "customer_john", "name": "John Doe"})
        self.stdout.write(
            json.dumps(
                {
                    "accountId": str(account.id),
                    "shopXUserId": account.twitter_user_id,
                    "customerXUserId": customer["id"],
                }
            )
        )
