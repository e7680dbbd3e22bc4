from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from contacts.models import Segment
from contacts.segment_schema import ConditionsField
from contacts.serializers import ContactOutput
from contacts.services import segments as services
from mktx.api.error_schema import error_response
from mktx.api.params import query_int
from mktx.api.permissions import ALL_ROLES
from mktx.api.serializers import CamelModelSerializer, CamelSerializer, StrictFieldsMixin
from mktx.api.viewsets import MerchantViewSet

TAGS = ["segments"]


class SegmentOutput(CamelModelSerializer):
    merchant_id = serializers.UUIDField(read_only=True)
    contact_count_at = serializers.DateTimeField(source="counted_at", read_only=True, help_text="When it was counted")
    conditions = ConditionsField(read_only=True)

    class Meta:
        model = Segment
        fields = [
            "id",
            "merchant_id",
            "name",
            "conditions",
            "contact_count",
            "contact_count_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SegmentInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200)
    conditions = ConditionsField()


class SegmentUpdateInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200, required=False)
    conditions = ConditionsField(required=False)


@extend_schema_view(
    list=extend_schema(summary="List segments", tags=TAGS),
    retrieve=extend_schema(summary="Get segment", tags=TAGS),
    create=extend_schema(summary="Create segment", tags=TAGS, request=SegmentInput, responses={200: SegmentOutput}),
    update=extend_schema(summary="Update segment", tags=TAGS, request=SegmentUpdateInput, responses=SegmentOutput),
    destroy=extend_schema(
        summary="Delete segment",
        tags=TAGS,
        responses={
            200: None,
            409: error_response("A scheduled, running or paused campaign uses it (`RESOURCE_IN_USE`)"),
        },
    ),
)
class SegmentViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = SegmentOutput
    action_roles = {"preview": ALL_ROLES}
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Segment]:
        return Segment.objects.filter(merchant_id=merchant_id)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(SegmentOutput(services.segment_count_fresh(self.get_object())).data)

    def create(self, request: Request) -> Response:
        data = SegmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        segment = services.segment_create(merchant_id=self.merchant_id, **data.validated_data)
        return Response(SegmentOutput(segment).data)

    def update(self, request: Request, pk: str | None = None) -> Response:
        segment = self.get_object()
        data = SegmentUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(SegmentOutput(services.segment_update(segment=segment, changes=data.validated_data)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.segment_delete(segment=self.get_object())
        return Response(None)

    @extend_schema(
        summary="Preview segment contacts",
        tags=TAGS,
        request=None,
        responses=OpenApiTypes.OBJECT,
        parameters=[OpenApiParameter("limit", int, description="Default 10, at most 50")],
    )
    @action(detail=True, methods=["post"], url_path="preview")
    def preview(self, request: Request, pk: str | None = None) -> Response:
        segment = self.get_object()
        limit = query_int(request, "limit", default=10, minimum=1, maximum=50)
        matches = services.segment_contacts(merchant_id=self.merchant_id, conditions=segment.conditions)
        total = matches.count()
        preview = ContactOutput(matches[:limit], many=True).data if total else []
        return Response({"totalMatches": total, "preview": preview})
