from __future__ import annotations

from contextlib import suppress
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from contacts.models import (
    AccountQuota,
    AttributeIndex,
    ConsentEvent,
    Contact,
    ContactTag,
    Conversation,
    ConversationEvent,
    ConversationResponse,
    Message,
    Segment,
    Tag,
)
from contacts.segment_users import segment_users
from contacts.services.contacts import contact_erase, contact_tag_remove, contact_tags_add, contact_update
from contacts.services.quota import QuotaCap, QuotaState
from contacts.services.segments import segment_contacts, segment_delete, segment_update
from mktx.api.errors import ApiError, NotFoundError
from mktx.queue import task_enqueue
from mktx.service_admin import ServiceAdmin, ServiceForm


class ReadOnlyMixin:
    """Rows the services write: shown, never added, changed or deleted here (a deleted message or event would
    leave the analytics rollup counting it)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ContactTagFormSet(BaseInlineFormSet):
    """A contact's tags: chosen among its merchant's only, and saved through the tag services (which keep
    `Contact.tag_names`, what segments filter on, in step) instead of writing ContactTag rows."""

    def add_fields(self, form: Any, index: Any) -> None:
        super().add_fields(form, index)
        form.fields["tag"].queryset = Tag.objects.filter(merchant_id=self.instance.merchant_id)
        form.fields["tag"].widget.can_add_related = False  # a tag made in a popup could be any merchant's

    def save(self, commit: bool = True) -> list[Any]:
        contact = self.instance
        kept = [f for f in self.forms if f not in self.deleted_forms and f.cleaned_data.get("tag")]
        before = {f.initial["tag"] for f in self.initial_forms if f.initial.get("tag")}
        after = {f.cleaned_data["tag"].pk for f in kept}
        names = dict(Tag.objects.filter(pk__in=before | after).values_list("pk", "name"))
        for pk in before - after:
            with suppress(NotFoundError):  # removed a moment ago elsewhere
                contact_tag_remove(contact=contact, tag_name=names[pk])
        if after - before:
            contact_tags_add(contact=contact, tags=sorted(names[pk] for pk in after - before))
        # what the admin's history message reads
        self.new_objects = list(ContactTag.objects.filter(contact=contact, tag_id__in=after - before))
        self.deleted_objects = [f.instance for f in self.initial_forms if f.initial.get("tag") in before - after]
        self.changed_objects = []
        return self.new_objects


class ContactTagInline(admin.TabularInline):
    model = ContactTag
    formset = ContactTagFormSet
    extra = 0


class ContactForm(ServiceForm):
    """Staff edit what the API lets a merchant edit, through contact_update: the display name (which then stops
    following X's) and the attributes (validated; a key removed here is deleted)."""

    api_names = {"display_name": "display_name", "attributes": "attributes"}

    class Meta:
        model = Contact
        fields = ("display_name", "attributes")

    def api_value(self, name: str, value: Any) -> Any:
        if name == "attributes" and isinstance(value, dict):
            return {**dict.fromkeys(set(self.instance.attributes) - set(value)), **value}
        return value

    def write(self, changes: dict[str, Any]) -> None:
        contact_update(contact=Contact.objects.get(pk=self.instance.pk), changes=changes)


@admin.register(Contact)
class ContactAdmin(ServiceAdmin):
    form = ContactForm
    list_display = (
        "username",
        "display_name",
        "account",
        "source",
        "following",
        "opted_out",
        "conversation_count",
        "last_interaction_at",
    )
    list_filter = ("account", "source", "opted_out", "following", "contact_tags__tag__name", "merchant")
    list_select_related = ("account",)
    search_fields = ("username", "display_name", "twitter_user_id")
    readonly_fields = (
        "id",
        "merchant",
        "account",
        "twitter_user_id",
        "username",  # X's, synced from its payloads, as are the profile image and following
        "display_name_overridden",
        "profile_image_url",
        "following",
        "source",
        "opted_out",
        "opted_out_at",
        "conversation_count",
        "messages_sent",
        "messages_received",
        "response_time_total",
        "response_time_count",
        "first_interaction_at",
        "last_interaction_at",
        "created_at",
        "updated_at",
    )
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    inlines = [ContactTagInline]
    show_full_result_count = False

    # Deleting a contact here is an erasure, as through the API: the raw webhook events are redacted too.
    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, set[str], Any]:
        """What erasure removes, listed as usual; no delete permission asked for its conversations and messages,
        which cannot be deleted on their own here: `contact_erase` takes them, and their counts, together."""
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request: HttpRequest, obj: Contact) -> None:
        contact_erase(contact=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        for contact in queryset.select_related("account"):
            contact_erase(contact=contact)


class MessageInline(ReadOnlyMixin, admin.TabularInline):
    model = Message
    fields = ("created_at", "direction", "origin", "content", "status", "error_detail", "twitter_message_id", "read_at")
    readonly_fields = fields
    ordering = ("created_at",)
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "contact",
        "account",
        "status",
        "ai_status",
        "assigned_to",
        "message_count",
        "last_message_at",
    )
    list_filter = ("status", "ai_status", "account", "merchant")
    list_select_related = ("contact", "account", "assigned_to")
    search_fields = ("contact__username", "contact__display_name", "id")
    readonly_fields = (
        "id",
        "merchant",
        "account",
        "contact",
        "channel",
        "message_count",
        "started_at",
        "last_message_at",
        "awaiting_reply_since",
        "away_message_sent_at",
        # opened, closed and reopened by the services only: each writes the conversation's history
        "status",
        "closed_at",
        "close_reason",
        # the bot's hand-off ends when a person closes the conversation, not by an edit here
        "ai_status",
        "ai_escalation_reason",
        "ai_escalated_at",
        "ai_handoff",
    )
    raw_id_fields = ("assigned_to",)
    inlines = [MessageInline]
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a conversation goes with its contact (contact_erase), its history and counts with it


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "direction", "origin", "short_content", "status", "account", "conversation")
    list_filter = ("direction", "origin", "status", "account")
    list_select_related = ("account", "conversation")
    search_fields = ("content", "twitter_message_id")
    show_full_result_count = False

    @admin.display(description="content")
    def short_content(self, obj: Message) -> str:
        return obj.content if len(obj.content) <= 80 else obj.content[:77] + "..."


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "contact", "action", "keyword", "source")
    list_filter = ("action", "source", "merchant")
    list_select_related = ("contact",)
    search_fields = ("contact__username", "keyword")


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "merchant", "created_at")
    list_filter = ("merchant",)
    list_select_related = ("merchant",)
    search_fields = ("name",)


class SegmentForm(ServiceForm):
    api_names = {"name": "name", "conditions": "conditions"}

    class Meta:
        model = Segment
        fields = ("name", "conditions")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "conditions" in self.fields:
            self.fields["conditions"].required = False  # [] is a segment of every contact, not a missing value

    def write(self, changes: dict[str, Any]) -> None:
        segment_update(segment=Segment.objects.get(pk=self.instance.pk), changes=changes)


@admin.register(Segment)
class SegmentAdmin(ServiceAdmin):
    form = SegmentForm
    list_display = ("name", "merchant", "contact_count", "counted_at", "updated_at")
    list_filter = ("merchant",)
    list_select_related = ("merchant",)
    search_fields = ("name",)
    readonly_fields = ("id", "merchant", "live_count", "matching_contacts", "contact_count", "counted_at", "created_at")
    fields = ("id", "merchant", "name", "conditions", "live_count", "matching_contacts", "contact_count", "counted_at")

    @admin.display(description="live count")
    def live_count(self, segment: Segment) -> str:
        try:
            return f"{segment_contacts(merchant_id=segment.merchant_id, conditions=segment.conditions).count():,}"
        except ApiError as exc:
            return f"invalid conditions: {exc.message}"

    @admin.display(description="matching contacts (first 20)")
    def matching_contacts(self, segment: Segment) -> str:
        try:
            contacts = list(segment_contacts(merchant_id=segment.merchant_id, conditions=segment.conditions)[:20])
        except ApiError:
            return "-"
        rows = format_html_join(
            "",
            '<li><a href="{}">@{}</a> {}</li>',
            ((reverse("admin:contacts_contact_change", args=[c.pk]), c.username, c.display_name) for c in contacts),
        )
        return format_html("<ul>{}</ul>", rows) if contacts else "none"

    # Deleting goes through segment_delete, which refuses while an active campaign sends to the segment.
    def has_delete_permission(self, request: HttpRequest, obj: Segment | None = None) -> bool:
        in_use = obj is not None and bool(segment_users(obj))
        return not in_use and super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        segment_delete(segment=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        for segment in queryset:
            try:
                segment_delete(segment=segment)
            except ApiError as exc:
                self.message_user(request, f"{segment.name}: {exc.message}", messages.WARNING)


@admin.register(AttributeIndex)
class AttributeIndexAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The numeric attribute keys of segments and which have an index (kept by contacts.services.attribute_indexes;
    rows change only through it, so the page is read-only and its one action queues a sync)."""

    list_display = (
        "key", "indexed", "merchant_count", "segment_count", "use_count", "last_used_at", "indexed_at", "index_name",
    )  # fmt: skip
    list_filter = ("indexed",)
    search_fields = ("key",)
    readonly_fields = list_display
    actions = ("sync_now",)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Sync the attribute indexes now (drop unused keys' indexes, build the most used)")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[AttributeIndex]) -> None:
        if task_enqueue("contacts.tasks.sync_attribute_indexes", task_name="attribute-indexes"):
            self.message_user(request, "Attribute index sync queued.")
        else:
            self.message_user(request, "The task queue is down: try again later.", level=messages.ERROR)


@admin.register(AccountQuota)
class AccountQuotaAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Each account's DMs of the rolling 24 h as the outbound path counts them (contacts.services.quota). Read-only,
    and never deleted here: the row is the quota, and only the outbound path writes it."""

    list_display = ("account", "used", "marketing", "campaign", "frees_up_at", "updated_at")
    list_select_related = ("account",)
    search_fields = ("account__username", "account__twitter_user_id")
    fields = ("account", "used", "marketing", "campaign", "frees_up_at", "updated_at", "buckets")
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def _state(self, obj: AccountQuota) -> QuotaState:
        cached: QuotaState | None = getattr(obj, "_quota_state", None)
        if cached is None:
            cached = QuotaState.of_row(obj.buckets)
            obj._quota_state = cached  # type: ignore[attr-defined]
        return cached

    @admin.display(description="DMs in the window")
    def used(self, obj: AccountQuota) -> int:
        return self._state(obj).used

    @admin.display(description="marketing")
    def marketing(self, obj: AccountQuota) -> int:
        return self._state(obj).marketing

    @admin.display(description="campaign")
    def campaign(self, obj: AccountQuota) -> int:
        return self._state(obj).campaign

    @admin.display(description="the daily quota frees one DM at")
    def frees_up_at(self, obj: AccountQuota) -> Any:
        return self._state(obj).reset_at(QuotaCap.DAILY)


@admin.register(ConversationEvent)
class ConversationEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The openings, reopenings and closings analytics counts (written by the conversation services)."""

    list_display = ("at", "kind", "conversation", "account", "seconds")
    list_filter = ("kind", "account")
    raw_id_fields = ("conversation",)
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(ConversationResponse)
class ConversationResponseAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The answered waits, whose times make the response-time figures."""

    list_display = ("waited_since", "seconds", "responder", "user", "conversation", "account")
    list_filter = ("responder", "account")
    raw_id_fields = ("conversation", "user")
    date_hierarchy = "waited_since"
    show_full_result_count = False
