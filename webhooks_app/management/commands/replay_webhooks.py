from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from mktx.accounts.models import Account
from webhooks_app.models import EventStatus, InboundEvent
from webhooks_app.services import inbound_event_replay


def _when(value: str, option: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"{option}: {value!r} is not an ISO date-time such as 2026-01-18T10:00:00Z", returncode=2)
    return parsed


class Command(BaseCommand):
    help = "Re-run stored inbound X events through processing. Idempotent: handlers deduplicate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", dest="ids", type=int, action="append", default=[], help="an event id (repeatable)")
        parser.add_argument("--since", help="received at or after (ISO 8601)")
        parser.add_argument("--until", help="received before (ISO 8601)")
        parser.add_argument("--account", help="a connected account's id")
        parser.add_argument("--status", choices=EventStatus.values, help="only events in this status")
        parser.add_argument("--dry-run", action="store_true", help="only count what would be replayed")

    def handle(self, *args: Any, **options: Any) -> None:
        events = InboundEvent.objects.all()
        if options["ids"]:
            events = events.filter(pk__in=options["ids"])
        if options["since"]:
            events = events.filter(received_at__gte=_when(options["since"], "--since"))
        if options["until"]:
            events = events.filter(received_at__lt=_when(options["until"], "--until"))
        if options["account"]:
            account = Account.objects.filter(pk=options["account"]).first() if _is_uuid(options["account"]) else None
            if account is None:
                raise CommandError(f"--account: no account {options['account']}", returncode=2)
            events = events.filter(Q(account=account) | Q(for_user_id=account.twitter_user_id))
        if options["status"]:
            events = events.filter(status=options["status"])
        ids = list(events.order_by("received_at", "pk").values_list("pk", flat=True))

        if options["dry_run"]:
            self.stdout.write(f"{len(ids)} events would be replayed (dry run, nothing changed)")
            return
        counts: dict[str, int] = {}
        for event_id in tqdm(ids, desc="replaying", unit="event", file=self.stderr, disable=not ids):
            status = inbound_event_replay(event_id=event_id) or "skipped"
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "nothing to replay"
        self.stdout.write(f"replayed {len(ids)} events ({summary})")


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
