from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from automation.seed import demo_flows_seed
from contacts.seed import seed_demo
from mktx.iam.models import Merchant, User


class Command(BaseCommand):
    help = (
        "Fill a merchant with realistic demo data: contacts with tags and attributes, conversations, messages, "
        "and the demo flows (a welcome flow for new followers, a keyword flow)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant-id", help="default: the demo merchant, else a new 'Seed Demo' merchant")
        parser.add_argument("--contacts", type=int, default=1000, help="how many contacts to add (default 1000)")

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["contacts"]
        if count < 1 or count > 10_000_000:
            raise CommandError("--contacts takes 1 to 10,000,000", returncode=2)
        merchant = self._merchant(options["merchant_id"])
        self.stdout.write(f"seeding {count:,} contacts for merchant {merchant.name} ({merchant.id})")
        started = time.monotonic()
        seed_demo(merchant=merchant, contacts=count, progress=self.stdout.write)
        flows = demo_flows_seed(merchant=merchant)
        self.stdout.write(f"demo flows: {flows} created and activated" if flows else "demo flows: already there")
        self.stdout.write(f"done: {count:,} contacts in {time.monotonic() - started:.1f} s")

    def _merchant(self, merchant_id: str | None) -> Merchant:
        if merchant_id:
            try:
                return Merchant.objects.get(pk=uuid.UUID(merchant_id))
            except (ValueError, Merchant.DoesNotExist):
                raise CommandError(f"--merchant-id: no merchant {merchant_id}", returncode=2) from None
        demo = User.objects.filter(email=settings.MKTX_DEMO_EMAIL).select_related("merchant").first()
        if demo is not None and demo.merchant is not None:
            return demo.merchant
        return Merchant.objects.get_or_create(name="Seed Demo")[0]
