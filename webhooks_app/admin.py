from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from webhooks_app.models import InboundEvent
from webhooks_app.services import inbound_event_replay


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "account", "for_user_id", "attempts", "received_at", "processed_at")
    list_filter = ("status", "kind", "account", "received_at")
    list_select_related = ("account",)
    search_fields = ("dedup_key", "for_user_id", "status_reason", "last_error")
    date_hierarchy = "received_at"
    readonly_fields = (
        "dedup_key",
        "kind",
        "for_user_id",
        "pretty_payload",
        "status",
        "status_reason",
        "account",
        "attempts",
        "last_error",
        "received_at",
        "claimed_at",
        "processed_at",
        "next_attempt_at",
    )
    exclude = ("payload",)
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="payload")
    def pretty_payload(self, obj: InboundEvent) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap; max-width: 100ch">{}</pre>',
            json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False),
        )

    @admin.action(description="Replay the selected events through processing")
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        counts: dict[str, int] = {}
        for event_id in queryset.values_list("pk", flat=True):
            status = inbound_event_replay(event_id=event_id) or "skipped (being processed)"
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"
        self.message_user(request, f"Replayed: {summary}.", messages.SUCCESS)
