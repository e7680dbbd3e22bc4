"""Render the back office's analytics page to PNG files with headless Chromium (Debian's `chromium`):

    make screenshots            # or: DEBUG=1 .venv/bin/python manage.py analytics_screenshots [--merchant ID]

For each time grouping (day, week, month) the page is rendered for a merchant (the demo merchant, else the first)
over the last 30 days (90 and 365 for week and month) as a staff user would see it, saved with the admin's own
stylesheets inlined as `var/screenshots/analytics-<groupBy>.html`, and photographed to `.png` beside it."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import Client
from django.utils import timezone

from mktx.iam.models import Merchant, User

OUT = Path(settings.BASE_DIR) / "var" / "screenshots"
RANGES = {"day": 30, "week": 90, "month": 365}


def inline_styles(html: str) -> str:
    """The page's `<link rel="stylesheet" href="/static/...">` replaced by the files' text (no server needed)."""

    def inline(match: re.Match[str]) -> str:
        found = finders.find(match.group(1))
        path = found if isinstance(found, str) else None
        return f"<style>{Path(path).read_text(encoding='utf-8')}</style>" if path else ""

    return re.sub(r'<link[^>]+href="/static/([^"]+\.css)"[^>]*>', inline, html)


class Command(BaseCommand):
    help = "Render the admin's analytics page to PNG files with headless Chromium."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="the merchant's id (default: the demo merchant, else the first)")
        parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = self._merchant(options["merchant"])
        if not Path(options["chromium"]).exists():
            raise CommandError("no chromium: apt-get install chromium (make screenshots does)")
        staff = User.objects.filter(is_staff=True, is_active=True).order_by("date_joined").first()
        if staff is None:
            raise CommandError("no staff user to see the page as: make run creates the demo one")
        client = Client(HTTP_HOST="localhost")
        client.force_login(staff)
        OUT.mkdir(parents=True, exist_ok=True)
        today = timezone.localdate()
        for group_by, days in RANGES.items():
            query = {
                "merchant": str(merchant.pk),
                "startDate": (today - timedelta(days=days - 1)).isoformat(),
                "endDate": today.isoformat(),
                "groupBy": group_by,
            }
            response = client.get("/admin/analytics/dashboard/", query)
            if response.status_code != 200:
                raise CommandError(f"the page answered {response.status_code}")
            page = OUT / f"analytics-{group_by}.html"
            page.write_text(inline_styles(response.content.decode()), encoding="utf-8")
            png = page.with_suffix(".png")
            self.stdout.write(f"rendering {png} ({group_by}, {days} days of {merchant.name})")
            subprocess.run(  # noqa: S603 - our own file and a fixed browser path
                [
                    options["chromium"],
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1400,2100",
                    f"--screenshot={png}",
                    page.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        self.stdout.write(self.style.SUCCESS(f"screenshots in {OUT}"))

    def _merchant(self, wanted: str | None) -> Merchant:
        merchants = Merchant.objects.order_by("created_at")
        merchant = merchants.filter(pk=wanted).first() if wanted else None
        if merchant is None and not wanted:
            demo = User.objects.filter(email=getattr(settings, "MKTX_DEMO_EMAIL", "")).first()
            merchant = demo.merchant if demo is not None and demo.merchant_id else merchants.first()
        if merchant is None:
            raise CommandError("no such merchant" if wanted else "no merchant yet: make run creates the demo one")
        return merchant
