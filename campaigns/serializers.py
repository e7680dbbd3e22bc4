from __future__ import annotations

from rest_framework import serializers

from campaigns.schedule_schema import ScheduleField
from mktx.api.serializers import CamelSerializer, StrictFieldsMixin

# --- campaigns ------------------------------------------------------------------------------------------------------


class CampaignInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=["promotional", "transactional", "engagement"])
    template_id = serializers.UUIDField()
    segment_ids = serializers.ListField(child=serializers.UUIDField(), allow_empty=True)
    schedule = ScheduleField(required=False)
    variables = serializers.JSONField(required=False, help_text="values for the template's placeholders")


class CampaignUpdateInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200, required=False)
    type = serializers.ChoiceField(choices=["promotional", "transactional", "engagement"], required=False)
    template_id = serializers.UUIDField(required=False)
    segment_ids = serializers.ListField(child=serializers.UUIDField(), required=False)
    schedule = ScheduleField(required=False)
    variables = serializers.JSONField(required=False)


class MetricsCounts(CamelSerializer):
    total_sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()


class CampaignOutput(CamelSerializer):
    id = serializers.UUIDField()
    merchant_id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField(help_text="Why a campaign failed")
    template_id = serializers.UUIDField(allow_null=True)
    segment_ids = serializers.ListField(child=serializers.UUIDField())
    schedule = ScheduleField()
    variables = serializers.JSONField()
    metrics = MetricsCounts()
    run_count = serializers.IntegerField()
    skipped_occurrences = serializers.IntegerField(help_text="Occurrences missed (an outage) and skipped, not sent")
    last_skipped_at = serializers.DateTimeField(allow_null=True, help_text="When the last skipped one was due")
    next_run_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    estimated_completion_at = serializers.DateTimeField(allow_null=True, required=False)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TestSendInput(StrictFieldsMixin, CamelSerializer):
    contact_ids = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=20)
    variables = serializers.DictField(required=False, default=dict)


# --- metrics (documents campaigns/metrics.py's campaign_metrics, which writes the answer) ---------------------------


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
    """Documents campaigns.testsend.campaign_test_send's results (written there, not by this serializer)."""

    contact_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["sent", "skipped", "failed"])
    message_id = serializers.UUIDField(required=False, help_text="When sent")
    dm_event_id = serializers.CharField(required=False, allow_null=True, help_text="X's DM event id, when sent")
    reason = serializers.CharField(required=False, help_text="When skipped (opted_out, ...) or failed (an error code)")
    detail = serializers.CharField(required=False)


class TestSendOutput(CamelSerializer):
    results = TestSendResult(many=True, help_text="One a contact, in the order asked")


class DeliveryOutput(CamelSerializer):
    id = serializers.CharField()
    run = serializers.IntegerField()
    contact_id = serializers.UUIDField(allow_null=True, help_text="null once the contact was erased")
    account_id = serializers.UUIDField()
    status = serializers.CharField()
    reason = serializers.CharField()
    error_detail = serializers.CharField()
    attempts = serializers.IntegerField()
    dm_event_id = serializers.CharField()
    message_id = serializers.UUIDField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)
    replied_at = serializers.DateTimeField(allow_null=True)
