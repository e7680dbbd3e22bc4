from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mktx.accounts.business_hours import WEEKDAYS, is_valid_timezone, parse_hhmm
from mktx.accounts.models import Account
from mktx.api.serializers import CamelModelSerializer, CamelSerializer, StrictFieldsMixin, UrlOrEmptyField

MAX_AWAY_MESSAGE = 10_000


class AccountOutput(CamelModelSerializer):
    merchant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Account
        fields = ["id", "merchant_id", "twitter_user_id", "username", "display_name", "status", "connected_at"]
        read_only_fields = fields


class AccountStatisticsOutput(CamelSerializer):
    total_contacts = serializers.IntegerField()
    total_conversations = serializers.IntegerField()
    messages_this_month = serializers.IntegerField()


class AccountDetailOutput(CamelModelSerializer):
    merchant_id = serializers.UUIDField(read_only=True)
    profile_image_url = UrlOrEmptyField()
    statistics = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "id",
            "merchant_id",
            "twitter_user_id",
            "username",
            "display_name",
            "profile_image_url",
            "status",
            "status_reason",
            "webhook_id",
            "connected_at",
            "disconnected_at",
            "auto_reply_enabled",
            "business_hours",
            "away_message",
            "opt_out_keywords",
            "statistics",
        ]
        read_only_fields = fields

    def get_statistics(self, account: Account) -> dict[str, int]:
        stats = self.context.get("statistics") or {}
        return {
            "totalContacts": int(stats.get("total_contacts", 0)),
            "totalConversations": int(stats.get("total_conversations", 0)),
            "messagesThisMonth": int(stats.get("messages_this_month", 0)),
        }


class AccountConnectInput(StrictFieldsMixin, CamelSerializer):
    oauth_token = serializers.CharField(max_length=200)
    oauth_token_secret = serializers.CharField(max_length=200)


class DayHoursInput(StrictFieldsMixin, serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()

    def validate_start(self, value: str) -> str:
        if parse_hhmm(value) is None:
            raise serializers.ValidationError("must be HH:MM (00:00 to 23:59)")
        return value

    def validate_end(self, value: str) -> str:
        if parse_hhmm(value) is None:
            raise serializers.ValidationError("must be HH:MM (00:00 to 23:59)")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        start, end = parse_hhmm(attrs["start"]), parse_hhmm(attrs["end"])
        if start and end and start >= end:
            raise serializers.ValidationError({"end": ["must be after start"]})
        return attrs


class ScheduleField(serializers.DictField):
    child = DayHoursInput()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in WEEKDAYS]
            if unknown:
                raise serializers.ValidationError({key: [f"must be one of {', '.join(WEEKDAYS)}"] for key in unknown})
        return super().to_internal_value(data)


class BusinessHoursInput(StrictFieldsMixin, serializers.Serializer):
    enabled = serializers.BooleanField()
    timezone = serializers.CharField(max_length=64)
    schedule = ScheduleField(required=False, default=dict)

    def validate_timezone(self, value: str) -> str:
        if not is_valid_timezone(value):
            raise serializers.ValidationError("must be an IANA time zone such as Asia/Ho_Chi_Minh")
        return value


class KeywordField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        word = str(super().to_internal_value(data)).strip().casefold()
        if not word or any(ch.isspace() for ch in word):
            raise serializers.ValidationError("a keyword is a single word")
        return word


class AccountSettingsInput(StrictFieldsMixin, CamelSerializer):
    auto_reply_enabled = serializers.BooleanField(required=False)
    business_hours = BusinessHoursInput(required=False, allow_null=True)
    away_message = serializers.CharField(required=False, allow_blank=True, max_length=MAX_AWAY_MESSAGE)
    opt_out_keywords = serializers.ListField(child=KeywordField(max_length=50), max_length=20, required=False)
