from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from mktx.iam.services import demo_merchant_ensure


class Command(BaseCommand):
    help = (
        "Ensure the development demo merchant and its owner login (MKTX_DEMO_EMAIL / MKTX_DEMO_PASSWORD). DEBUG only."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            self.stderr.write("DEBUG is off: no demo user is created.")
            return
        merchant, user = demo_merchant_ensure(email=settings.MKTX_DEMO_EMAIL, password=settings.MKTX_DEMO_PASSWORD)
        self.stdout.write(json.dumps({"merchantId": str(merchant.id), "userId": str(user.id), "email": user.email}))
