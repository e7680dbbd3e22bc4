from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from contacts.field_schema import AttributeChangesField, TagsField
from contacts.models import Contact, Conversation, Message
from contacts.selectors import contact_engagement
from mktx.api.serializers import CamelModelSerializer, CamelSerializer, StrictFieldsMixin, UrlOrEmptyField


class ContactOutput(CamelModelSerializer):
    account_id = serializers.UUIDField(read_only=True)
    profile_image_url = UrlOrEmptyField()
    tags = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = [
            "id",
            "account_id",
            "twitter_user_id",
            "username",
            "display_name",
            "profile_image_url",
            "tags",
            "attributes",
            "following",
            "opted_out",
            "conversation_count",
            "first_interaction_at",
            "last_interaction_at",
        ]
        read_only_fields = fields

    def get_tags(self, contact: Contact) -> list[str]:
        return sorted(contact.tag_names or [])  # the copy on the row, kept in step by the tag services

    def to_representation(self, contact: Contact) -> dict[str, Any]:
        # Written out rather than field by field: the list endpoints shape up to 100 of these per request, and the
        # declared fields above still document the shape (the schema) and are checked against this by the tests.
        return {
            "id": str(contact.id),
            "accountId": str(contact.account_id),
            "twitterUserId": contact.twitter_user_id,
            "username": contact.username,
            "displayName": contact.display_name,
            "profileImageUrl": contact.profile_image_url,
            "tags": self.get_tags(contact),
            "attributes": contact.attributes,
            "following": contact.following,
            "optedOut": contact.opted_out,
            "conversationCount": contact.conversation_count,
            "firstInteractionAt": iso(contact.first_interaction_at),
            "lastInteractionAt": iso(contact.last_interaction_at),
        }


def iso(value: datetime | None) -> str | None:
    """The API's date-time format (REST_FRAMEWORK's DATETIME_FORMAT), in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


class EngagementOutput(CamelSerializer):
    messages_sent = serializers.IntegerField()
    messages_received = serializers.IntegerField()
    average_response_time = serializers.CharField(allow_null=True, help_text="As `5m 30s`; null until a reply.")
    average_response_time_seconds = serializers.IntegerField(allow_null=True)


class ContactDetailOutput(ContactOutput):
    engagement = serializers.SerializerMethodField()

    class Meta(ContactOutput.Meta):
        fields = [*ContactOutput.Meta.fields, "source", "opted_out_at", "created_at", "engagement"]
        read_only_fields = fields

    def get_engagement(self, contact: Contact) -> dict[str, Any]:
        return contact_engagement(contact)

    def to_representation(self, contact: Contact) -> dict[str, Any]:
        return {
            **super().to_representation(contact),
            "source": contact.source,
            "optedOutAt": iso(contact.opted_out_at),
            "createdAt": iso(contact.created_at),
            "engagement": self.get_engagement(contact),
        }


class ContactUpdateInput(StrictFieldsMixin, CamelSerializer):
    display_name = serializers.CharField(required=False, max_length=100)
    attributes = AttributeChangesField(required=False)


class TagsInput(StrictFieldsMixin, CamelSerializer):
    tags = TagsField()


class AttributesInput(StrictFieldsMixin, CamelSerializer):
    attributes = AttributeChangesField()


class ContactSummaryOutput(CamelModelSerializer):
    profile_image_url = UrlOrEmptyField()

    class Meta:
        model = Contact
        fields = ["username", "display_name", "profile_image_url"]
        read_only_fields = fields


class ConversationOutput(CamelModelSerializer):
    contact_id = serializers.UUIDField(read_only=True)
    account_id = serializers.UUIDField(read_only=True)
    assigned_to_user_id = serializers.UUIDField(source="assigned_to_id", read_only=True, allow_null=True)
    contact = ContactSummaryOutput(read_only=True)

    class Meta:
        model = Conversation
        fields = [
            "id",
            "contact_id",
            "account_id",
            "status",
            "channel",
            "assigned_to_user_id",
            "message_count",
            "started_at",
            "last_message_at",
            "closed_at",
            "close_reason",
            "ai_status",
            "ai_escalation_reason",
            "ai_escalated_at",
            "ai_handoff",
            "contact",
        ]
        read_only_fields = fields

    def to_representation(self, conversation: Conversation) -> dict[str, Any]:  # see ContactOutput
        contact = conversation.contact
        return {
            "id": str(conversation.id),
            "contactId": str(conversation.contact_id),
            "accountId": str(conversation.account_id),
            "status": conversation.status,
            "channel": conversation.channel,
            "assignedToUserId": str(conversation.assigned_to_id) if conversation.assigned_to_id else None,
            "messageCount": conversation.message_count,
            "startedAt": iso(conversation.started_at),
            "lastMessageAt": iso(conversation.last_message_at),
            "closedAt": iso(conversation.closed_at),
            "closeReason": conversation.close_reason,
            "aiStatus": conversation.ai_status,
            "aiEscalationReason": conversation.ai_escalation_reason,
            "aiEscalatedAt": iso(conversation.ai_escalated_at),
            "aiHandoff": conversation.ai_handoff,
            "contact": {
                "username": contact.username,
                "displayName": contact.display_name,
                "profileImageUrl": contact.profile_image_url,
            },
        }


class ContactConversationOutput(CamelModelSerializer):
    contact_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "contact_id", "status", "message_count", "started_at", "last_message_at"]
        read_only_fields = fields


class MessageOutput(CamelModelSerializer):
    conversation_id = serializers.UUIDField(read_only=True)
    sent_by_user_id = serializers.UUIDField(source="sent_by_id", read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "conversation_id",
            "twitter_message_id",
            "direction",
            "origin",
            "type",
            "content",
            "attachments",
            "metadata",
            "is_from_bot",
            "sent_by_user_id",
            "status",
            "error_code",
            "error_detail",
            "sent_at",
            "read_at",
            "created_at",
        ]
        read_only_fields = fields


class ConversationDetailOutput(ConversationOutput):
    # Declared for the schema only (to_representation below writes the output): neither read-only, so that the
    # schema does not call them required, since `includeMessages=false` leaves both out.
    messages = MessageOutput(many=True, required=False, help_text="The newest `messagesTake` messages, oldest first")
    messages_total = serializers.IntegerField(required=False, help_text="How many messages the conversation has")

    class Meta(ConversationOutput.Meta):
        fields = [*ConversationOutput.Meta.fields, "messages", "messages_total"]
        read_only_fields = fields

    def get_messages(self, conversation: Conversation) -> list[dict[str, Any]] | None:
        messages = self.context.get("messages")
        return None if messages is None else list(MessageOutput(messages, many=True).data)

    def get_messages_total(self, conversation: Conversation) -> int | None:
        total = self.context.get("messages_total")
        return None if total is None else int(total)

    def to_representation(self, conversation: Conversation) -> dict[str, Any]:
        return {
            **super().to_representation(conversation),
            "messages": self.get_messages(conversation),
            "messagesTotal": self.get_messages_total(conversation),
        }


class AttachmentInput(StrictFieldsMixin, serializers.Serializer):
    type = serializers.ChoiceField(choices=["image"], default="image")
    url = serializers.URLField(max_length=2000)


class SendMessageInput(StrictFieldsMixin, CamelSerializer):
    content = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    type = serializers.ChoiceField(choices=["text", "image"], default="text")
    attachments = AttachmentInput(many=True, required=False, default=list)


class CloseInput(StrictFieldsMixin, CamelSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class AssignInput(StrictFieldsMixin, CamelSerializer):
    user_id = serializers.UUIDField(allow_null=True)
