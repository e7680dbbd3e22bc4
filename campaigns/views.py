from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import templates
from campaigns.models import Template, TemplateType
from campaigns.template_serializers import (
    PreviewInput,
    PreviewOutput,
    TemplateInput,
    TemplateOutput,
    TemplateUpdateInput,
)
from campaigns.templating import render
from contacts.models import Contact
from mktx.api.error_schema import error_response
from mktx.api.errors import InvalidInput
from mktx.api.params import query_choice
from mktx.api.permissions import ALL_ROLES
from mktx.api.viewsets import MerchantViewSet

TAGS = ["templates"]


@extend_schema_view(
    list=extend_schema(
        summary="List templates",
        tags=TAGS,
        parameters=[OpenApiParameter("type", str, enum=TemplateType.values), OpenApiParameter("search", str)],
    ),
    retrieve=extend_schema(summary="Get template", tags=TAGS),
    create=extend_schema(summary="Create template", tags=TAGS, request=TemplateInput, responses={200: TemplateOutput}),
    update=extend_schema(summary="Update template", tags=TAGS, request=TemplateUpdateInput, responses=TemplateOutput),
    destroy=extend_schema(
        summary="Delete template",
        tags=TAGS,
        responses={
            200: None,
            409: error_response("A scheduled, running or paused campaign uses it (`RESOURCE_IN_USE`)"),
        },
    ),
)
class TemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MerchantViewSet):
    serializer_class = TemplateOutput
    action_roles = {"preview": ALL_ROLES}
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Template]:
        return Template.objects.filter(merchant_id=merchant_id)

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action != "list":
            return queryset
        kind = query_choice(self.request, "type", TemplateType.values)
        search = (self.request.query_params.get("search") or "").strip()
        if kind:
            queryset = queryset.filter(type=kind)
        if search:
            queryset = queryset.filter(name__icontains=search)
        return queryset

    def create(self, request: Request) -> Response:
        data = TemplateInput(data=request.data)
        data.is_valid(raise_exception=True)
        template = templates.template_create(merchant_id=self.merchant_id, **data.validated_data)
        return Response(TemplateOutput(template).data)

    def update(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        data = TemplateUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(TemplateOutput(templates.template_update(template=template, **data.validated_data)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        templates.template_delete(template=self.get_object())
        return Response(None)

    @extend_schema(summary="Preview template", tags=TAGS, request=PreviewInput, responses=PreviewOutput)
    @action(detail=True, methods=["post"], url_path="preview")
    def preview(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        data = PreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        contact = None
        if data.validated_data.get("contact_id"):
            contact = Contact.objects.filter(merchant_id=self.merchant_id, pk=data.validated_data["contact_id"]).first()
            if contact is None:
                raise InvalidInput("contactId", "no contact of this merchant has this id")
        rendered = render(template, variables=data.validated_data["variables"], contact=contact)
        return Response(PreviewOutput(rendered).data)
