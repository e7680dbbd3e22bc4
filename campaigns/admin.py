from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from campaigns import lifecycle
from campaigns.campaigns import EDITABLE, campaign_update, schedule_of
from campaigns.metrics import counts_of, estimated_completion, with_rates
from campaigns.models import ACTIVE_STATUSES, AccountPacing, Campaign, CampaignRun, Delivery, DeliveryStatus, Template
from campaigns.serializers import CampaignUpdateInput
from campaigns.templates import template_delete, template_update
from campaigns.templating import render
from contacts.models import Segment
from mktx.accounts.business_hours import WEEKDAYS
from mktx.api.errors import ApiError, InvalidInput
from mktx.service_admin import ServiceAdmin, ServiceForm, ViewOnlyAdmin


class TemplateForm(ServiceForm):
    api_names = {n: n for n in ("name", "type", "content", "variables", "options", "card")}

    class Meta:
        model = Template
        fields = ("name", "type", "content", "variables", "options", "card")

    def write(self, changes: dict[str, Any]) -> None:
        template_update(template=Template.objects.get(pk=self.instance.pk), **changes)


@admin.register(Template)
class TemplateAdmin(ServiceAdmin):
    form = TemplateForm
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

    # Deleting goes through template_delete, which refuses while an active campaign uses the template.
    def has_delete_permission(self, request: HttpRequest, obj: Template | None = None) -> bool:
        in_use = obj is not None and obj.campaigns.filter(status__in=ACTIVE_STATUSES).exists()
        return not in_use and super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Template) -> None:
        template_delete(template=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        for template in queryset:
            try:
                template_delete(template=template)
            except ApiError as exc:
                self.message_user(request, f"{template.name}: {exc.message}", messages.WARNING)


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


CAMPAIGN_INPUTS = {
    "name": "name",
    "type": "type",
    "template": "templateId",
    "segments": "segmentIds",
    "variables": "variables",
    "schedule": "schedule",
}


class CampaignForm(ServiceForm):
    api_names = CAMPAIGN_INPUTS
    schedule = forms.JSONField(
        required=False,
        help_text='{"startAt", "endAt", "recurrence": {"frequency", "interval", "until"}, '
        '"sendWindow": {"start": "09:00", "end": "21:00", "days": ["monday", ...]}}',
    )

    class Meta:
        model = Campaign
        fields = tuple(name for name in CAMPAIGN_INPUTS if name != "schedule")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "schedule" in self.fields and self.instance.pk:
            self.fields["schedule"].initial = schedule_of(self.instance).as_json()
        merchant_id = self.instance.merchant_id
        for name, model in (("template", Template), ("segments", Segment)):
            if name in self.fields:  # read-only fields are not in the form
                self.fields[name].queryset = model.objects.filter(merchant_id=merchant_id)  # type: ignore[attr-defined]

    def api_value(self, name: str, value: Any) -> Any:
        if name == "template":
            return str(value.pk) if value is not None else None
        if name == "segments":
            return [str(segment.pk) for segment in value or []]
        return value

    def write(self, changes: dict[str, Any]) -> None:
        """The API's update, through its serializer (the same checks), then the same service."""
        campaign = Campaign.objects.get(pk=self.instance.pk)
        data = CampaignUpdateInput(data=changes, context={"schedule": schedule_of(campaign)})
        if not data.is_valid():
            field, errors = next(iter(data.errors.items()))
            raise InvalidInput(str(field), str(errors[0] if isinstance(errors, list) else errors))
        campaign_update(campaign=campaign, **data.validated_data)


@admin.register(Campaign)
class CampaignAdmin(ServiceAdmin):
    form = CampaignForm
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
        "send_window",
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

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        # What campaign_update would refuse is not offered: only a draft or scheduled campaign is edited.
        if obj is not None and obj.status not in EDITABLE:
            inputs = [name if name != "schedule" else "schedule_shown" for name in CAMPAIGN_INPUTS]
            return (*self.readonly_fields, *inputs)
        return self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.status not in EDITABLE:
            fields = [name for name in fields if name != "schedule"]
        return fields

    @admin.display(description="schedule")
    def schedule_shown(self, campaign: Campaign) -> str:
        return json.dumps(schedule_of(campaign).as_json())

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        return False  # no service deletes a campaign (its deliveries are the record): cancel it instead

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        pending = Count("deliveries", filter=Q(deliveries__status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]))
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

    @admin.display(description="send window")
    def send_window(self, campaign: Campaign) -> str:
        window = schedule_of(campaign).send_window
        if window is None:
            return "any time"
        days = ", ".join(WEEKDAYS[d] for d in window.days) if window.days else "every day"
        return f"{window.start:%H:%M}-{window.end:%H:%M} ({days}), in the sending account's time zone"

    @admin.display(description="estimated completion")
    def estimated_completion(self, campaign: Campaign) -> Any:
        return estimated_completion(campaign) or "-"


@admin.register(Delivery)
class DeliveryAdmin(ViewOnlyAdmin):
    """Read-only: deliveries change only through the sender."""

    list_display = ("id", "campaign", "run", "contact", "account", "status", "reason", "attempts", "sent_at")
    list_filter = ("status", "reason", "campaign__merchant")
    list_select_related = ("campaign", "run", "contact", "account")
    search_fields = ("campaign__name", "contact__username", "dm_event_id")
    raw_id_fields = ("campaign", "run", "contact", "account", "message")


@admin.register(AccountPacing)
class AccountPacingAdmin(admin.ModelAdmin):
    """Read-only: each account's campaign pace as the sender keeps it (X's window as last reported, the next slot and
    what sets it)."""

    list_display = ("account", "next_send_at", "reason", "x_limit", "x_remaining", "x_reset_at", "last_send_at")
    list_filter = ("reason",)
    list_select_related = ("account",)
    search_fields = ("account__username",)
    readonly_fields = (
        "account",
        "next_send_at",
        "reason",
        "holder",
        "x_limit",
        "x_remaining",
        "x_reset_at",
        "last_send_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
