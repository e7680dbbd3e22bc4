from __future__ import annotations

import uuid

from django.db import models

from contacts.models import Segment
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


class CampaignType(models.TextChoices):
    PROMOTIONAL = "promotional", "Promotional"
    TRANSACTIONAL = "transactional", "Transactional"
    ENGAGEMENT = "engagement", "Engagement"


class Campaign(models.Model):
    """A template sent to segments. Its lifecycle and sender come with the campaigns work; templates and segments
    already refuse deletion while a campaign in an active state uses them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=CampaignType.choices, default=CampaignType.PROMOTIONAL)
    status = models.CharField(max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    # finished campaigns keep their history when their template is deleted
    template = models.ForeignKey(Template, null=True, on_delete=models.SET_NULL, related_name="campaigns")
    segments = models.ManyToManyField(Segment, related_name="campaigns", blank=True)
    variables = models.JSONField(default=dict, blank=True)
    schedule = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "status"], name="campaign_merchant_status")]

    def __str__(self) -> str:
        return self.name
