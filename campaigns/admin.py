from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from campaigns import lifecycle
from campaigns.metrics import counts_of, estimated_completion, with_rates
from campaigns.models import Campaign, CampaignRun, Delivery, Template
from campaigns.templating import render
from mktx.api.errors import ApiError


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "type", "merchant", "updated_at")
    list_filter = ("type", "merchant")
    list_select_related = ("merchant",)
    search_fields = ("name", "content")
    readonly_fields = ("id", "merchant", "rendered_preview", "created_at", "updated_at")

    @admin.display(description="preview (defaults, placeholders without one shown as [name])")
    def rendered_preview(self, template: Template) -> str:
        values = {name: f"[{name}]" for name in template.variables}
        values |= {"contact.displayName": "[contact.displayName]", "contact.username": "[contact.username]"}
        try:
            return render(template, variables=values).text
        except ApiError as exc:
            return f"cannot render: {exc.message}"


class RunInline(admin.TabularInline):
    model = CampaignRun
    extra = 0
    can_delete = False
    fields = ("number", "status", "audience_size", "started_at", "ends_at", "finished_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _each(action: Any, verb: str) -> Any:
    """An admin action that runs the same service as the API on each selected campaign."""

    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        done = 0
        for campaign in queryset:
            try:
                action(campaign=campaign)
                done += 1
            except ApiError as exc:
                modeladmin.message_user(request, f"{campaign.name}: {exc.message}", messages.WARNING)
        if done:
            modeladmin.message_user(request, f"{verb}: {done} campaign(s)", messages.SUCCESS)

    run.__name__ = f"{verb.lower()}_campaigns"
    return admin.action(description=f"{verb} selected campaigns")(run)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "type", "status", "progress", "merchant", "template", "next_run_at", "created_at")
    list_filter = ("status", "type", "merchant")
    list_select_related = ("merchant", "template")
    search_fields = ("name",)
    readonly_fields = (
        "id",
        "merchant",
        "status",
        "status_reason",
        "progress",
        "metrics",
        "estimated_completion",
        "run_count",
        "skipped_occurrences",
        "last_skipped_at",
        "next_run_at",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
    filter_horizontal = ("segments",)
    inlines = [RunInline]
    actions = [
        _each(lifecycle.campaign_pause, "Pause"),
        _each(lifecycle.campaign_resume, "Resume"),
        _each(lifecycle.campaign_cancel, "Cancel"),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        pending = Count("deliveries", filter=Q(deliveries__status__in=["pending", "sending"]))
        return super().get_queryset(request).annotate(_audience=Count("deliveries"), _waiting=pending)

    @admin.display(description="progress")
    def progress(self, campaign: Campaign) -> str:
        audience = getattr(campaign, "_audience", None)
        waiting = getattr(campaign, "_waiting", None)
        if audience is None:
            counts = counts_of(Delivery.objects.filter(campaign=campaign))
            audience, waiting = counts["audience"], counts["pending"]
        if not audience:
            return "-"
        done = audience - (waiting or 0)
        return f"{done}/{audience} ({done * 100 // audience}%)"

    @admin.display(description="metrics")
    def metrics(self, campaign: Campaign) -> str:
        counts = with_rates(counts_of(Delivery.objects.filter(campaign=campaign)))
        return ", ".join(f"{name} {value}" for name, value in counts.items())

    @admin.display(description="estimated completion")
    def estimated_completion(self, campaign: Campaign) -> Any:
        return estimated_completion(campaign) or "-"


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Read-only: deliveries change only through the sender."""

    list_display = ("id", "campaign", "run", "contact", "account", "status", "reason", "attempts", "sent_at")
    list_filter = ("status", "reason", "campaign__merchant")
    list_select_related = ("campaign", "run", "contact", "account")
    search_fields = ("campaign__name", "contact__username", "dm_event_id")
    raw_id_fields = ("campaign", "run", "contact", "account", "message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
