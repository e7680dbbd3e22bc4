from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from mktx.accounts.models import Account
from mktx.iam.models import Merchant


class ContactSource(models.TextChoices):
    INBOUND_MESSAGE = "inbound_message", "Inbound message"
    NEW_FOLLOWER = "new_follower", "New follower"
    API = "api", "API"
    IMPORT = "import", "Import"


class Tag(models.Model):
    """A merchant's tag; names are stored case-folded, so `VIP` and `vip` are one tag."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["merchant", "name"], name="tag_unique_per_merchant")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """An X user who interacted with one of the merchant's accounts; unique per (account, X user)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="contacts")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="contacts")
    twitter_user_id = models.CharField(max_length=32)
    username = models.CharField(max_length=50, blank=True)
    display_name = models.CharField(max_length=100, blank=True)
    display_name_overridden = models.BooleanField(default=False, help_text="Set by staff; X's name no longer syncs.")
    profile_image_url = models.URLField(max_length=500, blank=True)
    source = models.CharField(max_length=20, choices=ContactSource.choices, default=ContactSource.INBOUND_MESSAGE)
    attributes = models.JSONField(default=dict, blank=True)
    # The tag names again, as a JSON array: on PostgreSQL a GIN index answers segment tag conditions without a join
    tag_names = models.JSONField(default=list, blank=True, editable=False)
    tags: models.ManyToManyField[Tag, ContactTag] = models.ManyToManyField(
        Tag, through="ContactTag", related_name="contacts", blank=True
    )
    following = models.BooleanField(default=False, help_text="Follows the account at X.")
    opted_out = models.BooleanField(default=False, help_text="Opted out of marketing sends.")
    opted_out_at = models.DateTimeField(null=True, blank=True)
    conversation_count = models.PositiveIntegerField(default=0)
    messages_sent = models.PositiveIntegerField(default=0, help_text="Sent to the contact.")
    messages_received = models.PositiveIntegerField(default=0, help_text="Received from the contact.")
    response_time_total = models.BigIntegerField(default=0, help_text="Seconds, summed over answered messages.")
    response_time_count = models.PositiveIntegerField(default=0)
    first_interaction_at = models.DateTimeField(null=True, blank=True)
    last_interaction_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = [models.F("last_interaction_at").desc(nulls_last=True), "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "twitter_user_id"], name="contact_unique_per_account"),
        ]
        # The newest-first indexes (merchant or account, last_interaction_at DESC NULLS LAST, created_at DESC) are
        # made by migration 0004: SQLite cannot say NULLS LAST in an index (and sorts NULLs last in DESC anyway).
        indexes = [
            models.Index(fields=["merchant", "opted_out", "opted_out_at"], name="contact_merchant_optout_at"),
            # analytics: contacts new in a range, and all of them at its end
            models.Index(fields=["merchant", "first_interaction_at"], name="contact_merchant_first"),
        ]

    def __str__(self) -> str:
        return f"@{self.username or self.twitter_user_id}"


class ContactTag(models.Model):
    # no single-column indexes: (contact, tag) unique and (tag, contact) below serve both directions
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="contact_tags", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="contact_tags", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "tag"], name="contact_tag_once")]
        indexes = [models.Index(fields=["tag", "contact"], name="contact_tag_by_tag")]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.tag_id}"


class ConversationStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class AIStatus(models.TextChoices):
    NONE = "none", "Not handed over"
    ESCALATED = "escalated", "Handed to people"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="conversations")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    channel = models.CharField(max_length=20, default="direct_message")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    message_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_message_at = models.DateTimeField()
    awaiting_reply_since = models.DateTimeField(null=True, blank=True)
    away_message_sent_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)
    # the chatbot's hand-off: escalated, the bot stays silent here until a person closes the conversation
    # database defaults too: set-based inserts (seed_demo, the benchmarks) name only the columns they fill
    ai_status = models.CharField(
        max_length=10, choices=AIStatus.choices, default=AIStatus.NONE, db_default=AIStatus.NONE.value
    )
    ai_escalation_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    ai_escalated_at = models.DateTimeField(null=True, blank=True)
    ai_handoff = models.JSONField(
        null=True, blank=True, default=None, help_text="The hand-off summary: intent, slots, last turns."
    )

    class Meta:
        ordering = ["-last_message_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact"], condition=Q(status="open"), name="conversation_one_open_per_contact"
            ),
        ]
        indexes = [
            models.Index(
                models.F("merchant"),
                models.F("status"),
                models.F("last_message_at").desc(),
                name="conv_merchant_status",
            ),
            models.Index(fields=["contact", "status"], name="conv_contact_status"),
            models.Index(fields=["assigned_to", "status"], name="conv_assignee_status"),
            # analytics: the conversations handed to people in a range
            models.Index(
                fields=["merchant", "ai_escalated_at"],
                condition=Q(ai_escalated_at__isnull=False),
                name="conv_merchant_escalated",
            ),
        ]

    def __str__(self) -> str:
        return f"conversation {self.id}"


class MessageDirection(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class MessageStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class MessageOrigin(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    STAFF = "staff", "Staff (API)"
    X_APP = "x_app", "Merchant in X's app"
    BOT = "bot", "Chatbot"
    SYSTEM = "system", "System (consent, away message)"
    CAMPAIGN = "campaign", "Campaign"
    FLOW = "flow", "Automation flow"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="messages")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=10, choices=MessageDirection.choices)
    origin = models.CharField(max_length=10, choices=MessageOrigin.choices)
    type = models.CharField(max_length=20, default="text")
    content = models.TextField(blank=True)
    attachments = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    is_from_bot = models.BooleanField(default=False)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="sent_messages"
    )
    # NULL, not "", while unknown: the unique constraints ignore NULLs
    twitter_message_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    idempotency_key = models.CharField(max_length=120, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=10, choices=MessageStatus.choices)
    error_code = models.CharField(max_length=40, blank=True)
    error_detail = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "twitter_message_id"], name="message_x_id_once_per_account"),
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="message_idempotency_key_once"),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
            models.Index(fields=["account", "direction", "created_at"], name="message_account_quota"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} message {self.id}"


class ConsentAction(models.TextChoices):
    OPT_OUT = "opt_out", "Opted out"
    OPT_IN = "opt_in", "Opted back in"


class ConsentEvent(models.Model):
    """The consent ledger: what changed, when, and from which message."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="consent_events")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_events")
    action = models.CharField(max_length=10, choices=ConsentAction.choices)
    keyword = models.CharField(max_length=50, blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=20, default="keyword")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.contact_id}"


class Segment(models.Model):
    """A saved contact query: conditions compiled to one SQL filter (contacts.segments)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    conditions = models.JSONField(default=list)
    contact_count = models.PositiveIntegerField(null=True, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AttributeIndex(models.Model):
    """An attribute key that saved segments compare as a number, and whether it has its expression index on
    PostgreSQL. The contacts table is shared by every merchant, so at most MKTX_MAX_ATTRIBUTE_INDEXES keys get
    one, the most widely used (contacts.services.attribute_indexes); the others are compared without an index.
    Rows are kept by that service only: a key no segment uses any more loses its row and its index."""

    key = models.CharField(max_length=64, unique=True)
    indexed = models.BooleanField(default=False)
    index_name = models.CharField(max_length=63, blank=True)
    merchant_count = models.PositiveIntegerField(default=0, help_text="Merchants with a segment using the key.")
    segment_count = models.PositiveIntegerField(default=0, help_text="Saved segments using the key.")
    use_count = models.PositiveIntegerField(default=0, help_text="Segment saves that compared the key as a number.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-indexed", "-merchant_count", "-segment_count", "key"]
        verbose_name_plural = "attribute indexes"

    def __str__(self) -> str:
        return self.key


class AccountQuota(models.Model):
    """The account's outbound DMs of the rolling 24 h as counts per 10-minute bucket (contacts.services.quota
    reads it; the outbound path updates it in the transaction that stores the Message, under SELECT ... FOR
    UPDATE). `buckets` maps a bucket number (epoch seconds // 600) to [all, marketing, campaign]: all counts every
    outbound DM X counts (pending or sent, X-app echoes included), marketing the origins campaign and flow,
    campaign the origin campaign. A failed message gives its count back to its own bucket."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, primary_key=True, related_name="dm_quota")
    buckets = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "account DM quota"

    def __str__(self) -> str:
        return f"DM quota of {self.account_id}"


class ConversationEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    CLOSED = "closed", "Closed"
    REOPENED = "reopened", "Reopened"


class ConversationEvent(models.Model):
    """A conversation's history of openings and closings, written by the services that open, close and reopen it
    (contacts.services.conversations): what analytics counts as opened, closed and open at a time, and the
    resolution time (a closing's `opened_at` is when the span it ends began: the opening or the last reopening, and
    `seconds` how long that span was open)."""

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=10, choices=ConversationEventKind.choices)
    at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True, help_text="A closing: when its span was opened.")
    seconds = models.PositiveIntegerField(null=True, blank=True, help_text="A closing: how long its span was open.")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="A closing: who the conversation was assigned to then.",
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["merchant", "at"], name="conv_event_merchant_at"),
            models.Index(fields=["conversation", "at"], name="conv_event_conversation_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M}"


class ConversationResponse(models.Model):
    """One answered wait: a customer's DM that waited for an answer (the first since the previous reply, or since
    the conversation was opened or reopened) and the first reply to it by staff, the merchant in X's app or the bot.
    Written when that reply is sent (contacts.services.message_states); campaign, flow and system DMs do not answer,
    and a closing ends a wait unanswered."""

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="responses")
    waited_since = models.DateTimeField(help_text="The customer's DM that waited.")
    answered_at = models.DateTimeField(help_text="When the reply was sent.")
    seconds = models.PositiveIntegerField()
    responder = models.CharField(max_length=10, choices=MessageOrigin.choices, help_text="staff, x_app or bot")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["waited_since", "id"]
        indexes = [models.Index(fields=["merchant", "waited_since"], name="conv_response_merchant_time")]

    def __str__(self) -> str:
        return f"{self.seconds} s by {self.responder}"


class ContactActivity(models.Model):
    """A contact DMed the account in this quarter-hour (UTC): the rollup's way of counting distinct active contacts
    over any range of whole quarter-hours without reading the DMs (one row per contact and quarter-hour, written
    with the inbound DM; erased with the contact)."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.DateTimeField()

    class Meta:
        verbose_name_plural = "contact activity"
        constraints = [models.UniqueConstraint(fields=["contact", "bucket"], name="contact_activity_once")]
        indexes = [models.Index(fields=["account", "bucket", "contact"], name="contact_activity_read")]

    def __str__(self) -> str:
        return f"active {self.bucket:%Y-%m-%d %H:%M}"
