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

from contacts.models import Conversation, ConversationStatus, MessageOrigin
from contacts.selectors import conversation_latest_messages, conversations_of
from contacts.serializers import (
    AssignInput,
    CloseInput,
    ConversationDetailOutput,
    ConversationOutput,
    MessageOutput,
    SendMessageInput,
)
from contacts.services.conversations import conversation_assign, conversation_close, conversation_reopen
from contacts.services.outbound import Attachment, message_send
from mktx.api.error_schema import x_errors
from mktx.api.params import query_bool, query_choice, query_int, query_uuid
from mktx.api.permissions import ALL_ROLES
from mktx.api.viewsets import MerchantViewSet
from mktx.iam.models import User

TAGS = ["conversations"]
MESSAGES_TAKE, MESSAGES_TAKE_MAX = 50, 200  # a long conversation is read from its end, a page at a time


@extend_schema_view(
    list=extend_schema(
        summary="List conversations",
        tags=TAGS,
        parameters=[
            OpenApiParameter("accountId", OpenApiTypes.UUID),
            OpenApiParameter("status", str, enum=ConversationStatus.values),
            OpenApiParameter("assignedTo", OpenApiTypes.UUID, description="A user's id"),
        ],
    ),
    retrieve=extend_schema(
        summary="Get conversation with messages",
        tags=TAGS,
        responses=ConversationDetailOutput,
        parameters=[
            OpenApiParameter("includeMessages", bool, description="Default true"),
            OpenApiParameter(
                "messagesTake",
                {"type": "integer", "minimum": 1, "maximum": MESSAGES_TAKE_MAX, "default": MESSAGES_TAKE},
                description="How many of the newest messages to include (oldest first); `messagesTotal` counts all",
            ),
            OpenApiParameter(
                "messagesSkip",
                {"type": "integer", "minimum": 0, "default": 0},
                description="How many of the newest messages to pass over first: reads a long conversation backwards",
            ),
        ],
    ),
)
class ConversationViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = ConversationOutput
    write_roles = ALL_ROLES  # agents work the inbox

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Conversation]:
        conversations = conversations_of(merchant_id)
        return conversations.select_related("account") if self.action == "messages" else conversations

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action != "list":
            return queryset
        account_id = query_uuid(self.request, "accountId")
        status = query_choice(self.request, "status", ConversationStatus.values)
        assigned_to = query_uuid(self.request, "assignedTo")
        if account_id:
            queryset = queryset.filter(account_id=account_id)
        if status:
            queryset = queryset.filter(status=status)
        if assigned_to:
            queryset = queryset.filter(assigned_to_id=assigned_to)
        return queryset.order_by("-last_message_at", "-id")

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        include = query_bool(request, "includeMessages", True)
        take = query_int(request, "messagesTake", default=MESSAGES_TAKE, minimum=1, maximum=MESSAGES_TAKE_MAX)
        skip = query_int(request, "messagesSkip", default=0, minimum=0, maximum=10**9)
        context: dict[str, Any] = {}
        if include:
            context["messages"], context["messages_total"] = conversation_latest_messages(
                conversation, take=take, skip=skip
            )
        data = ConversationDetailOutput(conversation, context=context).data
        if not include:
            data.pop("messages", None)
            data.pop("messagesTotal", None)
        return Response(data)

    @extend_schema(
        summary="Send message", tags=TAGS, request=SendMessageInput, responses={200: MessageOutput, **x_errors()}
    )
    @action(detail=True, methods=["post"], url_path="messages")
    def messages(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        data = SendMessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        conversation = conversation_reopen(conversation=conversation)
        message = message_send(
            conversation=conversation,
            content=values["content"],
            message_type=values["type"],
            attachments=[Attachment(url=a["url"], type=a["type"]) for a in values["attachments"]],
            origin=MessageOrigin.STAFF,
            sent_by_id=request.user.pk if isinstance(request.user, User) else None,  # not an external IAM's user
        )
        return Response(MessageOutput(message).data)

    @extend_schema(summary="Close conversation", tags=TAGS, request=CloseInput, responses=ConversationOutput)
    @action(detail=True, methods=["put"], url_path="close")
    def close(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        data = CloseInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        conversation_close(conversation=conversation, reason=data.validated_data["reason"])
        return Response(ConversationOutput(conversation).data)

    @extend_schema(summary="Assign conversation", tags=TAGS, request=AssignInput, responses=ConversationOutput)
    @action(detail=True, methods=["post"], url_path="assign")
    def assign(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        data = AssignInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation_assign(conversation=conversation, user_id=data.validated_data["user_id"])
        return Response(ConversationOutput(conversation).data)
