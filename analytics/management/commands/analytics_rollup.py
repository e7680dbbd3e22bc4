"""Operate the analytics rollup: build it again from the rows, merge it, or check it against the rows.

manage.py analytics_rollup --build [--merchant-id ID]   count again (all: also marks the rollup built)
manage.py analytics_rollup --merge                      fold the rows added since the last merge
manage.py analytics_rollup --check [--merchant-id ID]   list where it and the rows disagree (exit 1 if any)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.rollup import rollup_build, rollup_differences
from mktx.accounts.models import Account
from mktx.tallies.services import tallies_freshness, tallies_merge


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--build", action="store_true")
        parser.add_argument("--merge", action="store_true")
        parser.add_argument("--check", action="store_true")
        parser.add_argument("--merchant-id", help="only this merchant's accounts (with --build or --check)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["build"] or options["merge"] or options["check"]):
            raise CommandError("say --build, --merge or --check")
        accounts = None
        if options["merchant_id"]:
            try:
                merchant_id = uuid.UUID(options["merchant_id"])
            except ValueError:
                raise CommandError("--merchant-id: not a merchant id") from None
            accounts = list(Account.objects.filter(merchant_id=merchant_id).values_list("pk", flat=True))
            if not accounts:
                raise CommandError("--merchant-id: no such merchant, or it has no account")
        if options["build"]:
            started = time.monotonic()
            self.stdout.write("building the rollup from the rows ...")
            written = rollup_build(accounts)
            self.stdout.write(f"built: {written:,} rows in {time.monotonic() - started:.1f} s")
        if options["merge"]:
            self.stdout.write(f"merged: {tallies_merge():,} rows")
        if options["check"]:
            differences = rollup_differences(accounts)
            for line in differences[:50]:
                self.stdout.write(line)
            if differences:
                raise CommandError(f"{len(differences)} differences between the rollup and the rows")
            self.stdout.write("the rollup agrees with the rows")
        fresh = tallies_freshness()
        self.stdout.write(f"built at {fresh['builtAt']}, merged at {fresh['mergedAt']}, {fresh['unmerged']:,} unmerged")
