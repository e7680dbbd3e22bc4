from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from contacts.services.attribute_indexes import attribute_indexes_sync


class Command(BaseCommand):
    help = (
        "PostgreSQL: bring the expression indexes of numeric contact attributes to the capped set the saved segments "
        "use (MKTX_MAX_ATTRIBUTE_INDEXES): drop those of keys no segment uses, build the most used. Safe to rerun."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("attribute indexes exist on PostgreSQL only", returncode=2)
        self.stdout.write(f"syncing attribute indexes (cap {settings.MKTX_MAX_ATTRIBUTE_INDEXES})")
        attribute_indexes_sync(progress=self.stdout.write)
