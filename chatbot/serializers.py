"""The AI settings and FAQ bodies of the API: camelCase on the wire, the services' Python names inside.

Values are JSON's own types (a boolean is `true`/`false`, not "yes"; a number is not a string), and every error
names the field as the client spelled it."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatbot import ai_settings as limits
from chatbot.ai_settings import order_lookup_secret_set
from chatbot.faq import MAX_ANSWER, MAX_QUESTION
from chatbot.models import FAQ, AISettings, Engine, EscalationAssignment
from chatbot.nlu import INTENTS
from mktx.api.serializers import CamelSerializer, StrictFieldsMixin, UrlOrEmptyField

# --- JSON's own types ------------------------------------------------------------------------------------------------


class JsonBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class JsonIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)) or data != int(data):
            raise serializers.ValidationError("must be a whole number")
        return super().to_internal_value(int(data))


class JsonNumberField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise serializers.ValidationError("must be a number")
        return super().to_internal_value(data)


class JsonStringField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


# An absolute http(s) URL of RFC 3986's characters only (what `format: uri` means): a host name or an IP literal,
# an optional port, path, query and fragment. No user info, no spaces, no letters beyond ASCII (a name in punycode).
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
HTTP_URL = re.compile(
    r"(?i:https?)://(?:[A-Za-z0-9\-._~]+|\[(?P<ip6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)


def is_http_url(value: str) -> bool:
    found = HTTP_URL.fullmatch(value)
    if found is None or (found["port"] and int(found["port"]) > 65_535):
        return False
    if found["ip6"]:
        try:
            ipaddress.IPv6Address(found["ip6"])
        except ValueError:
            return False
    return True


@extend_schema_field(
    {"type": "string", "anyOf": [{"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}, {"maxLength": 0}]}
)
class HttpUrlOrEmptyField(JsonStringField):
    """An http(s) URL, or "" to clear it."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value and not is_http_url(value):
            raise serializers.ValidationError("must be an http(s) URL")
        return value


# --- AI settings -----------------------------------------------------------------------------------------------------


class AISettingsInput(StrictFieldsMixin, CamelSerializer):
    """PUT /ai/settings: each field optional; those given change, the others stay."""

    enabled = JsonBooleanField(required=False)
    model = JsonStringField(required=False, max_length=limits.MAX_MODEL)
    temperature = JsonNumberField(required=False, min_value=limits.TEMPERATURE[0], max_value=limits.TEMPERATURE[1])
    max_tokens = JsonIntegerField(required=False, min_value=limits.MAX_TOKENS[0], max_value=limits.MAX_TOKENS[1])
    auto_escalation_threshold = JsonNumberField(
        required=False,
        min_value=limits.THRESHOLD[0],
        max_value=limits.THRESHOLD[1],
        help_text="Under this confidence the bot asks to rephrase, and hands over the second time in a row",
    )
    system_prompt = JsonStringField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=limits.MAX_SYSTEM_PROMPT
    )
    engine = serializers.ChoiceField(
        required=False, choices=Engine.values, help_text="`openai` needs OPENAI_API_KEY on the server"
    )
    auto_reply = JsonBooleanField(required=False, help_text="Answer customers' DMs by itself")
    handoff_message = JsonStringField(
        required=False, max_length=limits.MAX_HANDOFF, help_text="Sent once when the bot hands a conversation over"
    )
    session_timeout_minutes = JsonIntegerField(
        required=False, min_value=limits.SESSION_TIMEOUT_MINUTES[0], max_value=limits.SESSION_TIMEOUT_MINUTES[1]
    )
    escalation_assignment = serializers.ChoiceField(required=False, choices=EscalationAssignment.values)
    order_lookup_url = HttpUrlOrEmptyField(
        required=False, allow_blank=True, max_length=limits.MAX_LOOKUP_URL, help_text='"" turns the lookup off'
    )
    order_lookup_secret = JsonStringField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=limits.MAX_LOOKUP_SECRET,
        write_only=True,
        help_text='Write-only: signs the lookup requests (`X-Mktx-Signature`); "" clears it',
    )

    def validate_engine(self, value: str) -> str:
        if value == Engine.OPENAI and not settings.OPENAI_API_KEY:
            raise serializers.ValidationError("the openai engine needs OPENAI_API_KEY on the server")
        return value


class AISettingsOutput(CamelSerializer):
    enabled = serializers.BooleanField()
    model = serializers.CharField()
    temperature = serializers.FloatField()
    max_tokens = serializers.IntegerField()
    auto_escalation_threshold = serializers.FloatField()
    system_prompt = serializers.CharField()
    engine = serializers.ChoiceField(choices=Engine.values)
    auto_reply = serializers.BooleanField()
    handoff_message = serializers.CharField()
    session_timeout_minutes = serializers.IntegerField()
    escalation_assignment = serializers.ChoiceField(choices=EscalationAssignment.values)
    order_lookup_url = UrlOrEmptyField(help_text='"" when the lookup is off')
    order_lookup_secret_set = serializers.SerializerMethodField(
        method_name="get_order_lookup_secret_set", help_text="Whether a lookup secret is stored (it is never shown)"
    )

    @extend_schema_field(serializers.BooleanField())
    def get_order_lookup_secret_set(self, row: AISettings) -> bool:
        return order_lookup_secret_set(row)


# --- FAQ -------------------------------------------------------------------------------------------------------------


class _FAQFields(StrictFieldsMixin, CamelSerializer):
    question = JsonStringField(max_length=MAX_QUESTION)
    answer = JsonStringField(max_length=MAX_ANSWER)
    intent = serializers.ChoiceField(
        required=False,
        allow_null=True,
        allow_blank=True,
        choices=INTENTS,
        help_text="The intent the entry answers (optional)",
    )


class FAQInput(_FAQFields):
    pass


class FAQUpdateInput(_FAQFields):
    """PUT /ai/faq/{id}: the fields given change, the others stay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for item in self.fields.values():
            item.required = False


class FAQOutput(CamelSerializer):
    id = serializers.UUIDField()
    question = serializers.CharField()
    answer = serializers.CharField()
    intent = serializers.SerializerMethodField(method_name="get_intent")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ChoiceField(choices=INTENTS, allow_null=True))
    def get_intent(self, faq: FAQ) -> str | None:
        return faq.intent or None
