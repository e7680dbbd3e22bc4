from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from contacts.models import Contact, ConversationStatus
from contacts.selectors import contact_export, contacts_filter, contacts_of
from contacts.serializers import (
    AttributesInput,
    ContactConversationOutput,
    ContactDetailOutput,
    ContactOutput,
    ContactUpdateInput,
    TagsInput,
)
from contacts.services import contacts as services
from mktx.api.pagination import paginated_response, read_skip_take
from mktx.api.params import query_choice, query_uuid
from mktx.api.permissions import ALL_ROLES
from mktx.api.viewsets import MerchantViewSet

TAGS = ["contacts"]
LIST_PARAMETERS = [
    OpenApiParameter("accountId", OpenApiTypes.UUID, description="Only this account's contacts"),
    OpenApiParameter("tags", str, description="Comma-separated tags: contacts having all of them (`vip,customer`)"),
    OpenApiParameter("tagsMatch", str, enum=["all", "any"], description="`any`: contacts having any of the tags"),
    OpenApiParameter("search", str, description="Case-insensitive, in username or display name"),
]


@extend_schema_view(
    list=extend_schema(summary="List contacts", tags=TAGS, parameters=LIST_PARAMETERS),
    retrieve=extend_schema(summary="Get contact details", tags=TAGS, responses=ContactDetailOutput),
    update=extend_schema(
        summary="Update contact", tags=TAGS, request=ContactUpdateInput, responses=ContactDetailOutput
    ),
    destroy=extend_schema(summary="Delete (erase) a contact", tags=TAGS, responses={200: None}),
)
class ContactViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = ContactOutput
    write_roles = ALL_ROLES  # agents work the inbox
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Contact]:
        return contacts_of(merchant_id)

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action != "list":
            return queryset
        return contacts_filter(
            queryset,
            merchant_id=self.merchant_id,
            account_id=query_uuid(self.request, "accountId"),
            tags=self.request.query_params.get("tags"),
            tags_match=query_choice(self.request, "tagsMatch", ["all", "any"]) or "all",
            search=self.request.query_params.get("search"),
        )

    def _detail(self, contact: Contact) -> Response:
        return Response(ContactDetailOutput(contacts_of(self.merchant_id).get(pk=contact.pk)).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(ContactDetailOutput(self.get_object()).data)

    def update(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        data = ContactUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.contact_update(contact=contact, changes=data.validated_data)
        return self._detail(contact)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.contact_erase(contact=self.get_object())
        return Response(None)

    @extend_schema(summary="Add tags to contact", tags=TAGS, request=TagsInput, responses=ContactDetailOutput)
    @action(detail=True, methods=["post"], url_path="tags")
    def tags(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        data = TagsInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.contact_tags_add(contact=contact, tags=data.validated_data["tags"])
        return self._detail(contact)

    @extend_schema(summary="Remove tag from contact", tags=TAGS, responses={200: ContactDetailOutput})
    @action(detail=True, methods=["delete"], url_path=r"tags/(?P<tag_name>[^/]+)")
    def remove_tag(self, request: Request, pk: str | None = None, tag_name: str = "") -> Response:
        contact = self.get_object()
        services.contact_tag_remove(contact=contact, tag_name=tag_name)
        return self._detail(contact)

    @extend_schema(
        summary="Update contact attributes", tags=TAGS, request=AttributesInput, responses=ContactDetailOutput
    )
    @action(detail=True, methods=["put"], url_path="attributes")
    def attributes(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        data = AttributesInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.contact_attributes_merge(contact=contact, changes=data.validated_data["attributes"])
        return self._detail(contact)

    @extend_schema(
        summary="Get contact conversations",
        tags=TAGS,
        responses=ContactConversationOutput(many=True),
        parameters=[OpenApiParameter("status", str, enum=ConversationStatus.values)],
    )
    @action(detail=True, methods=["get"], url_path="conversations")
    def conversations(self, request: Request, pk: str | None = None) -> Response:
        contact = self.get_object()
        conversations = contact.conversations.order_by("-last_message_at")
        status = query_choice(request, "status", ConversationStatus.values)
        if status:
            conversations = conversations.filter(status=status)
        skip, take = read_skip_take(request)
        page = list(conversations[skip : skip + take])
        data = ContactConversationOutput(page, many=True).data
        return paginated_response(data, skip=skip, take=take, total=conversations.count())

    @extend_schema(summary="Export everything held about a contact (GDPR)", tags=TAGS, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"], url_path="export")
    def export(self, request: Request, pk: str | None = None) -> Response:
        return Response(contact_export(self.get_object()))
