"""The chatbot's back office (issue 14 item 9): each merchant's AI settings and FAQ, edited through the services and
checks the API uses; chat sessions with their turns and the token usage, read-only.

The order lookup's secret is never on a page: neither its plain text nor its ciphertext, only whether one is set
(and an action that clears it). Escalated conversations are a filter of the conversations' own page (contacts)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chatbot.ai_settings import MAX_LOOKUP_URL, SECRET_FIELD, ai_settings_update, order_lookup_secret_set
from chatbot.faq import faq_delete, faq_update
from chatbot.models import FAQ, AISettings, ChatSession, ChatTurn, TokenUsage
from chatbot.nlu import INTENTS
from chatbot.serializers import AISettingsInput, FAQUpdateInput
from mktx.api.errors import InvalidInput
from mktx.api.serializers import to_camel
from mktx.service_admin import ServiceAdmin, ServiceForm

SETTINGS_FORM_FIELDS = (
    "enabled",
    "auto_reply",
    "engine",
    "model",
    "temperature",
    "max_tokens",
    "auto_escalation_threshold",
    "system_prompt",
    "handoff_message",
    "session_timeout_minutes",
    "escalation_assignment",
    "order_lookup_url",
)


def _checked(serializer_class: type, changes: dict[str, Any]) -> dict[str, Any]:
    """The API's checks of `changes` (API names); their first error as the API would name it."""
    data = serializer_class(data=changes)
    if not data.is_valid():
        field, errors = next(iter(data.errors.items()))
        raise InvalidInput(str(field), str(errors[0] if isinstance(errors, list) else errors))
    return dict(data.validated_data)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# --- AI settings -----------------------------------------------------------------------------------------------------


class AISettingsForm(ServiceForm):
    api_names = {name: to_camel(name) for name in SETTINGS_FORM_FIELDS}
    # checked by the API's serializer (an http(s) URL or ""), not guessed into one as Django's URL field would
    order_lookup_url = forms.CharField(required=False, max_length=MAX_LOOKUP_URL, label="Order lookup URL")

    class Meta:
        model = AISettings
        fields = SETTINGS_FORM_FIELDS

    def write(self, changes: dict[str, Any]) -> None:
        """As PUT /ai/settings: the same serializer, then the same service."""
        ai_settings_update(merchant_id=self.instance.merchant_id, changes=_checked(AISettingsInput, changes))


@admin.register(AISettings)
class AISettingsAdmin(ServiceAdmin):
    form = AISettingsForm
    list_display = (
        "merchant",
        "enabled",
        "auto_reply",
        "engine",
        "model",
        "escalation_assignment",
        "lookup",
        "updated_at",
    )
    list_filter = ("enabled", "auto_reply", "engine", "escalation_assignment")
    list_select_related = ("merchant",)
    search_fields = ("merchant__name",)
    readonly_fields = ("merchant", "order_lookup_secret_state", "updated_at")
    actions = ["clear_order_lookup_secret"]

    def has_delete_permission(self, request: HttpRequest, obj: AISettings | None = None) -> bool:
        return False  # a merchant always has settings (their defaults until written): change them instead

    @admin.display(description="order lookup")
    def lookup(self, row: AISettings) -> str:
        if not row.order_lookup_url:
            return "off"
        return "on, signed" if order_lookup_secret_set(row) else "on, no secret"

    @admin.display(description="order lookup secret")
    def order_lookup_secret_state(self, row: AISettings) -> str:
        return "set (never shown)" if order_lookup_secret_set(row) else "not set"

    @admin.action(description="Clear the order lookup secret")
    def clear_order_lookup_secret(self, request: HttpRequest, queryset: QuerySet[AISettings]) -> None:
        cleared = 0
        for row in queryset:
            if order_lookup_secret_set(row):
                ai_settings_update(merchant_id=row.merchant_id, changes={SECRET_FIELD: ""})
                cleared += 1
        self.message_user(request, f"Cleared the order lookup secret of {cleared} merchant(s).", messages.SUCCESS)


# --- FAQ -------------------------------------------------------------------------------------------------------------


class FAQForm(ServiceForm):
    api_names = {"question": "question", "answer": "answer", "intent": "intent"}
    intent = forms.ChoiceField(choices=[("", "(none)"), *((name, name) for name in INTENTS)], required=False)

    class Meta:
        model = FAQ
        fields = ("question", "answer", "intent")

    def write(self, changes: dict[str, Any]) -> None:
        """As PUT /ai/faq/{id}: the same serializer, then the same service."""
        faq_update(faq=FAQ.objects.get(pk=self.instance.pk), changes=_checked(FAQUpdateInput, changes))


@admin.register(FAQ)
class FAQAdmin(ServiceAdmin):
    form = FAQForm
    list_display = ("short_question", "intent", "merchant", "updated_at")
    list_filter = ("merchant", "intent")
    list_select_related = ("merchant",)
    search_fields = ("question", "answer")
    readonly_fields = ("id", "merchant", "created_at", "updated_at")
    show_full_result_count = False

    @admin.display(description="question")
    def short_question(self, faq: FAQ) -> str:
        return faq.question if len(faq.question) <= 80 else faq.question[:77] + "..."

    def delete_model(self, request: HttpRequest, obj: FAQ) -> None:
        faq_delete(faq=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FAQ]) -> None:
        for faq in queryset:
            faq_delete(faq=faq)


# --- sessions and usage ----------------------------------------------------------------------------------------------


class ChatTurnInline(admin.TabularInline):
    model = ChatTurn
    fields = ("created_at", "role", "content", "intent", "confidence", "engine", "fallback_reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyAdmin):
    list_display = ("id", "conversation", "merchant", "status", "current_intent", "started_at", "last_activity_at")
    list_filter = ("status", "merchant")
    list_select_related = ("conversation", "conversation__contact", "merchant")
    search_fields = ("conversation__id",)
    readonly_fields = (
        "id",
        "merchant",
        "conversation",
        "status",
        "current_intent",
        "slots",
        "low_confidence_streak",
        "started_at",
        "last_activity_at",
        "ended_at",
    )
    inlines = [ChatTurnInline]
    show_full_result_count = False


@admin.register(TokenUsage)
class TokenUsageAdmin(ReadOnlyAdmin):
    list_display = ("day", "merchant", "requests", "prompt_tokens", "completion_tokens")
    list_filter = ("merchant",)
    list_select_related = ("merchant",)
    search_fields = ("merchant__name",)
    date_hierarchy = "day"
    readonly_fields = ("merchant", "day", "requests", "prompt_tokens", "completion_tokens")
