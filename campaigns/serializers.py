from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.campaigns import schedule_of
from campaigns.models import Campaign, CampaignType, Delivery, DeliveryStatus
from campaigns.schedule import Schedule, parse_schedule
from campaigns.schedule_schema import SCHEDULE, ScheduleField
from mktx.api.errors import InvalidInput
from mktx.api.serializers import CamelSerializer, StrictFieldsMixin

MAX_SEGMENTS = 20

# --- campaigns ------------------------------------------------------------------------------------------------------


class _CampaignFields(StrictFieldsMixin, CamelSerializer):
    """Checks what the services take (in Python names): a schedule becomes a `Schedule`, merged over the current
    one on update (`context["schedule"]`)."""

    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=CampaignType.values)
    template_id = serializers.UUIDField()
    segment_ids = serializers.ListField(child=serializers.UUIDField(), allow_empty=True, max_length=MAX_SEGMENTS)
    schedule = ScheduleField(required=False)
    variables = serializers.JSONField(required=False, help_text="values for the template's placeholders")

    def validate_schedule(self, value: Any) -> Schedule:
        current = self.context.get("schedule")
        if current is not None and isinstance(value, dict) and value:  # an update changes the keys it gives
            value = {**current.as_json(), **value}
        return parse_schedule(value or None)  # its errors name the whole path (`schedule.recurrence.until`)

    def validate_variables(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object of placeholder values")
        for key, item in value.items():
            if item is not None and not isinstance(item, (str, int, float, bool)):
                raise InvalidInput(f"variables.{key}", "must be a string, number or boolean")
        return dict(value)


class CampaignInput(_CampaignFields):
    pass


class CampaignUpdateInput(_CampaignFields):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for item in self.fields.values():
            item.required = False


class MetricsCounts(CamelSerializer):
    total_sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()


class CampaignOutput(CamelSerializer):
    """A campaign as the API answers it, from the model; `metrics` is set on the instance by the view (one
    aggregate query for a whole page)."""

    id = serializers.UUIDField()
    merchant_id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField(help_text="Why a campaign failed")
    template_id = serializers.UUIDField(allow_null=True)
    segment_ids = serializers.SerializerMethodField(method_name="get_segment_ids")
    schedule = serializers.SerializerMethodField(method_name="get_schedule")
    variables = serializers.JSONField()
    metrics = MetricsCounts()
    run_count = serializers.IntegerField()
    skipped_occurrences = serializers.IntegerField(help_text="Occurrences missed (an outage) and skipped, not sent")
    last_skipped_at = serializers.DateTimeField(allow_null=True, help_text="When the last skipped one was due")
    next_run_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_segment_ids(self, campaign: Campaign) -> list[str]:
        return [str(segment.pk) for segment in campaign.segments.all()]

    @extend_schema_field(SCHEDULE)
    def get_schedule(self, campaign: Campaign) -> dict[str, Any]:
        return schedule_of(campaign).as_json()


class CampaignDetailOutput(CampaignOutput):
    estimated_completion_at = serializers.DateTimeField(
        allow_null=True, help_text="When the current run should be done at the accounts' pace (running or paused)"
    )


class TestSendInput(StrictFieldsMixin, CamelSerializer):
    contact_ids = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=20)
    variables = serializers.DictField(required=False, default=dict)


# --- metrics: the answer of campaigns/metrics.py (Python names), camelCased here -------------------------------


class MetricsRates(CamelSerializer):
    total_sent = serializers.IntegerField(help_text="Deliveries X was asked to send (sent + failed)")
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    pending = serializers.IntegerField()
    open_rate = serializers.FloatField(help_text="Over delivered, two decimals")
    click_rate = serializers.FloatField()
    reply_rate = serializers.FloatField()
    delivery_rate = serializers.FloatField(help_text="Delivered over totalSent")


class MetricsBucket(CamelSerializer):
    timestamp = serializers.DateTimeField(help_text="The hour (UTC)")
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()


class MetricsRun(MetricsRates):
    run = serializers.IntegerField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    audience = serializers.IntegerField()


class CampaignMetricsOutput(MetricsRates):
    audience = serializers.IntegerField(help_text="Deliveries of the runs counted")
    timeline = MetricsBucket(many=True)
    runs = MetricsRun(many=True)


class TestSendResult(CamelSerializer):
    """One of campaigns.testsend.campaign_test_send's results."""

    contact_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=[DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED])
    message_id = serializers.UUIDField(required=False, help_text="When sent")
    dm_event_id = serializers.CharField(required=False, allow_null=True, help_text="X's DM event id, when sent")
    reason = serializers.CharField(required=False, help_text="When skipped (opted_out, ...) or failed (an error code)")
    detail = serializers.CharField(required=False)


class TestSendOutput(CamelSerializer):
    results = TestSendResult(many=True, help_text="One a contact, in the order asked")


class DeliveryOutput(CamelSerializer):
    id = serializers.CharField()
    run = serializers.IntegerField(source="run.number")
    contact_id = serializers.UUIDField(allow_null=True, help_text="null once the contact was erased")
    account_id = serializers.UUIDField()
    status = serializers.CharField()
    reason = serializers.CharField()
    error_detail = serializers.CharField()
    attempts = serializers.IntegerField()
    dm_event_id = serializers.CharField()
    message_id = serializers.UUIDField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a pending one is due")
    sent_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)
    replied_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, delivery: Delivery) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(delivery)
        if delivery.status != DeliveryStatus.PENDING:
            data["nextAttemptAt"] = None
        return data
