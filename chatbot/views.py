"""The AI settings and FAQ endpoints (CONTRACT.md "AI chatbot"): agents read, owners and admins write."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from chatbot.ai_settings import ai_settings_of, ai_settings_update
from chatbot.faq import faq_create, faq_delete, faq_update, faqs_of
from chatbot.models import FAQ, AISettings
from chatbot.serializers import AISettingsInput, AISettingsOutput, FAQInput, FAQOutput, FAQUpdateInput
from mktx.api.viewsets import MerchantViewSet

TAGS = ["ai"]


@extend_schema_view(
    retrieve=extend_schema(
        summary="Get AI settings",
        description="The merchant's settings, defaults until first written. `orderLookupSecret` is never returned: "
        "`orderLookupSecretSet` says whether one is stored.",
        tags=TAGS,
        responses=AISettingsOutput,
    ),
    update=extend_schema(
        summary="Update AI settings",
        description="Changes the fields given and keeps the others. Owners and admins only.",
        tags=TAGS,
        request=AISettingsInput,
        responses=AISettingsOutput,
    ),
)
class AISettingsViewSet(MerchantViewSet):
    """One resource per merchant, at `/ai/settings` (no id)."""

    serializer_class = AISettingsOutput
    http_method_names = ["get", "put", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[AISettings]:
        return AISettings.objects.filter(merchant_id=merchant_id)

    def get_object(self) -> AISettings:
        """The caller's settings (there is no id: one resource per merchant)."""
        return ai_settings_of(merchant_id=self.merchant_id)

    def retrieve(self, request: Request) -> Response:
        return Response(AISettingsOutput(self.get_object()).data)

    def update(self, request: Request) -> Response:
        data = AISettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = ai_settings_update(merchant_id=self.merchant_id, changes=data.validated_data)
        return Response(AISettingsOutput(row).data)


@extend_schema_view(
    list=extend_schema(summary="List FAQ entries", tags=TAGS),
    retrieve=extend_schema(summary="Get FAQ entry", tags=TAGS),
    create=extend_schema(
        summary="Create FAQ entry",
        description="At most 500 entries per merchant.",
        tags=TAGS,
        request=FAQInput,
        responses={200: FAQOutput},
    ),
    update=extend_schema(summary="Update FAQ entry", tags=TAGS, request=FAQUpdateInput, responses=FAQOutput),
    destroy=extend_schema(summary="Delete FAQ entry", tags=TAGS, responses={200: None}),
)
class FAQViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MerchantViewSet):
    serializer_class = FAQOutput
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[FAQ]:
        return faqs_of(merchant_id)

    def create(self, request: Request) -> Response:
        data = FAQInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(FAQOutput(faq_create(merchant_id=self.merchant_id, **data.validated_data)).data)

    def update(self, request: Request, pk: str | None = None) -> Response:
        faq = self.get_object()
        data = FAQUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(FAQOutput(faq_update(faq=faq, changes=data.validated_data)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        faq_delete(faq=self.get_object())
        return Response(None)
