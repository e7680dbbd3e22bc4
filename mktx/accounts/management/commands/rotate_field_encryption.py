"""Re-encrypt the stored X tokens with the newest of FIELD_ENCRYPTION_KEYS (run after adding a key in front)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mktx.accounts.services import account_tokens_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored X token with the first of FIELD_ENCRYPTION_KEYS; afterwards the older keys can be "
        "removed. Accounts whose tokens no key decrypts are put in error (they must be connected again)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated, unreadable = account_tokens_rotate()
        self.stdout.write(f"{rotated} rotated, {unreadable} unreadable")
        if unreadable:
            self.stderr.write(f"{unreadable} account(s) could not be decrypted with any key and were put in error")
