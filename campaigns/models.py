from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce

from contacts.models import Contact, Message, Segment
from mktx.accounts.models import Account
from mktx.iam.models import Merchant


class TemplateType(models.TextChoices):
    TEXT = "text", "Text"
    QUICK_REPLY = "quick_reply", "Quick reply"
    CARD = "card", "Card"


class Template(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=TemplateType.choices, default=TemplateType.TEXT)
    content = models.TextField()
    variables = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=list, blank=True, help_text="Quick reply options.")
    card = models.JSONField(default=dict, blank=True, help_text="Card image and buttons.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["merchant", "type"], name="template_merchant_type")]

    def __str__(self) -> str:
        return self.name


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


# the states in which a campaign needs its template and its segments
ACTIVE_STATUSES = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)


class CampaignType(models.TextChoices):
    PROMOTIONAL = "promotional", "Promotional"
    TRANSACTIONAL = "transactional", "Transactional"
    ENGAGEMENT = "engagement", "Engagement"


FREQUENCY_CHOICES = [("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly")]


class Campaign(models.Model):
    """A template sent to the union of segments, once or on a recurrence; each occurrence is a CampaignRun with its
    own frozen audience (Delivery rows). Status changes are conditional updates (services.py)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=CampaignType.choices, default=CampaignType.PROMOTIONAL)
    status = models.CharField(max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    # finished campaigns keep their history when their template is deleted
    template = models.ForeignKey(Template, null=True, on_delete=models.SET_NULL, related_name="campaigns")
    segments = models.ManyToManyField(Segment, related_name="campaigns", blank=True)
    variables = models.JSONField(default=dict, blank=True)
    # the schedule (campaigns.schedule.Schedule; `schedule_of` in campaigns/campaigns.py reads it back)
    start_at = models.DateTimeField(null=True, blank=True, help_text="startAt: the first occurrence; empty: now.")
    end_at = models.DateTimeField(null=True, blank=True, help_text="endAt: what is not sent by then is skipped.")
    recurrence_frequency = models.CharField(
        max_length=10,
        blank=True,
        default="",
        choices=[("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly")],
    )
    recurrence_interval = models.PositiveSmallIntegerField(default=1)
    recurrence_until = models.DateField(null=True, blank=True)
    send_window_start = models.TimeField(null=True, blank=True, help_text="DMs go out only from this local time")
    send_window_end = models.TimeField(null=True, blank=True, help_text="... until this one (account's time zone)")
    send_window_days = models.JSONField(
        default=list, blank=True, help_text="Weekdays of the send window (0 = Monday); empty: every day."
    )
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="When the next occurrence fires.")
    run_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    skipped_occurrences = models.PositiveIntegerField(
        default=0, help_text="Occurrences of the recurrence missed (an outage, a long run) and skipped, not sent."
    )
    last_skipped_at = models.DateTimeField(null=True, blank=True, help_text="When the last skipped occurrence was due.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["merchant", "status"], name="campaign_merchant_status"),
            models.Index(fields=["status", "next_run_at"], name="campaign_status_next_run"),
        ]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class CampaignRun(models.Model):
    """One occurrence of a campaign: its audience frozen at start, its own deliveries and metrics."""

    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.RUNNING)
    audience_size = models.PositiveIntegerField(default=0)
    audience_frozen_at = models.DateTimeField(null=True, blank=True, help_text="When its deliveries were inserted.")
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="endAt: what is not sent by then is skipped.")
    finished_at = models.DateTimeField(null=True, blank=True)
    # the card image uploaded to X once per run and account: {account id: {"url", "mediaId"}} (media.py)
    media = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [models.UniqueConstraint(fields=["campaign", "number"], name="campaign_run_unique_number")]

    def __str__(self) -> str:
        return f"{self.campaign} #{self.number}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class Delivery(models.Model):
    """One recipient of one run. Claimed by a conditional update with a lease, sent through the outbound path,
    recorded with X's DM event id. Engagement times are stored here so the metrics survive a contact's erasure
    (contact and message are then set to NULL: the delivery is anonymised, not dropped)."""

    id = models.BigAutoField(primary_key=True)
    # run, campaign and contact are indexed by the composite indexes below (fewer indexes: faster fan-out)
    run = models.ForeignKey(CampaignRun, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="campaign_deliveries", db_index=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="campaign_deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    reason = models.CharField(max_length=40, blank=True, default="")
    error_detail = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Claims so far; each has its own message key.")
    failures = models.PositiveSmallIntegerField(default=0, help_text="X 5xx and timeouts so far (3 tries).")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dm_event_id = models.CharField(max_length=64, blank=True, default="")
    attempted_at = models.DateTimeField(null=True, blank=True, help_text="When the send was last answered.")
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["run", "contact"], name="delivery_unique_per_run")]
        indexes = [
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status"),
            models.Index(
                fields=["account", "next_attempt_at", "id"],
                name="delivery_pending_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["lease_until"], name="delivery_sending_lease", condition=Q(status="sending")),
            models.Index(fields=["next_attempt_at"], name="delivery_pending_next", condition=Q(status="pending")),
            models.Index(fields=["contact", "sent_at"], name="delivery_contact_sent"),
            # analytics: a range's deliveries, by when they were sent (or made, not sent yet)
            models.Index(Coalesce("attempted_at", "created_at"), name="delivery_analytics_time"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class TrackedLink(models.Model):
    """A campaign URL for one delivery: `MKTX_PUBLIC_URL/l/<token>` redirects to `url` and records the clicks."""

    id = models.BigAutoField(primary_key=True)
    token = models.CharField(max_length=32, unique=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="links")
    url = models.URLField(max_length=2000)
    clicks = models.PositiveIntegerField(default=0)
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "url"], name="tracked_link_unique_url")]

    def __str__(self) -> str:
        return f"/l/{self.token} -> {self.url}"


class AccountPacing(models.Model):
    """The campaign sender's slot per X account: the next send may not happen before `next_send_at`. Taken by a
    compare-and-set (`holder`), so any number of sender lanes and processes keep one send per account in flight and
    the account's sends evenly spaced inside X's window, as X's last `x-rate-limit-*` answer reported it."""

    account = models.OneToOneField(Account, primary_key=True, on_delete=models.CASCADE, related_name="pacing")
    next_send_at = models.DateTimeField(null=True, blank=True)
    last_send_at = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=32, blank=True, default="", help_text="The lane sending now, if any.")
    x_limit = models.PositiveIntegerField(null=True, blank=True, help_text="x-rate-limit-limit of the last DM send")
    x_remaining = models.PositiveIntegerField(null=True, blank=True, help_text="x-rate-limit-remaining")
    x_reset_at = models.DateTimeField(null=True, blank=True, help_text="x-rate-limit-reset")
    reason = models.CharField(max_length=40, blank=True, default="", help_text="What sets next_send_at")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"pacing of {self.account_id}: next at {self.next_send_at}"


class SenderLane(models.Model):
    """At most MKTX_SENDER_LANES sender loops run at once; each holds a lane by lease."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"sender lane {self.pk}"
