"""The AI endpoints on a conversation: `POST /ai/conversations/{id}/message`, `GET .../context`, `POST
.../escalate`. Agents may use them (they work the inbox); another merchant's conversation is a 404."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from chatbot.ai_settings import ai_settings_of
from chatbot.bot import bot_answer, escalate
from chatbot.serializers import JsonBooleanField, JsonStringField
from chatbot.sessions import conversation_context
from contacts.models import Conversation
from mktx.api.permissions import ALL_ROLES
from mktx.api.serializers import CamelSerializer, StrictFieldsMixin
from mktx.api.viewsets import MerchantViewSet

TAGS = ["ai"]


class MessageInput(StrictFieldsMixin, CamelSerializer):
    message = JsonStringField(max_length=4_000, trim_whitespace=True)
    send = JsonBooleanField(required=False, default=False, help_text="Also send the answer as a bot DM")


class AnswerOutput(CamelSerializer):
    intent = serializers.CharField()
    confidence = serializers.FloatField()
    response = serializers.CharField()
    slots = serializers.DictField(child=serializers.CharField())
    requires_escalation = serializers.BooleanField()
    engine = serializers.CharField(help_text="builtin | openai")
    session_id = serializers.UUIDField()


class TurnOutput(CamelSerializer):
    role = serializers.CharField(help_text="user | assistant")
    content = serializers.CharField()


class ContextOutput(CamelSerializer):
    session_id = serializers.UUIDField(allow_null=True)
    context = TurnOutput(many=True)  # type: ignore[assignment]  # a field named as the contract names it
    current_intent = serializers.CharField(allow_null=True)
    slots = serializers.DictField(child=serializers.CharField())
    status = serializers.CharField(help_text="active | ended | escalated | none")


class EscalateInput(StrictFieldsMixin, CamelSerializer):
    reason = JsonStringField(max_length=200, required=False, default="requested_by_staff")


class EscalationOutput(CamelSerializer):
    conversation_id = serializers.UUIDField()
    ai_status = serializers.CharField()
    reason = serializers.CharField()
    escalated_at = serializers.DateTimeField(allow_null=True)


class AIConversationViewSet(MerchantViewSet):
    serializer_class = AnswerOutput  # OPTIONS describes the message action
    action_roles = {"message": ALL_ROLES, "context": ALL_ROLES, "escalate": ALL_ROLES}

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Conversation]:
        return Conversation.objects.filter(merchant_id=merchant_id).select_related("account", "contact")

    @extend_schema(summary="Send a message to the AI", tags=TAGS, request=MessageInput, responses=AnswerOutput)
    @action(detail=True, methods=["post"])
    def message(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        answer = bot_answer(
            conversation=conversation, text=data.validated_data["message"], send=data.validated_data["send"]
        )
        return Response(answer.as_api())

    @extend_schema(summary="Get the AI conversation context", tags=TAGS, responses=ContextOutput)
    @action(detail=True, methods=["get"])
    def context(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        settings = ai_settings_of(merchant_id=conversation.merchant_id)
        return Response(conversation_context(conversation, settings=settings))

    @extend_schema(summary="Escalate to a person", tags=TAGS, request=EscalateInput, responses=EscalationOutput)
    @action(detail=True, methods=["post"])
    def escalate(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        data = EscalateInput(data=request.data)
        data.is_valid(raise_exception=True)
        escalate(conversation=conversation, reason=data.validated_data["reason"])
        conversation.refresh_from_db()
        body: dict[str, Any] = {
            "conversation_id": conversation.pk,
            "ai_status": conversation.ai_status,
            "reason": conversation.ai_escalation_reason,
            "escalated_at": conversation.ai_escalated_at,
        }
        return Response(EscalationOutput(body).data)
