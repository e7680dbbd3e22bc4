from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from mktx.iam.models import Merchant


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    ERROR = "error", "Error"


class Account(models.Model):
    """An X account a merchant connected. Disconnecting keeps the row (and its history) as `inactive`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="accounts")
    twitter_user_id = models.CharField(max_length=32)
    username = models.CharField(max_length=50)
    display_name = models.CharField(max_length=100, blank=True)
    profile_image_url = models.URLField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    status_reason = models.CharField(max_length=300, blank=True)
    webhook_id = models.CharField(max_length=64, blank=True)
    connected_at = models.DateTimeField(default=timezone.now)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    auto_reply_enabled = models.BooleanField(default=False)
    business_hours = models.JSONField(default=dict, blank=True)
    away_message = models.TextField(blank=True)
    opt_out_keywords = models.JSONField(default=list, blank=True, help_text="The merchant's own opt-out words.")
    # Encrypted at rest (mktx.accounts.crypto); never serialized, shown in the admin or logged.
    oauth_token_encrypted = models.TextField(blank=True, editable=False)
    oauth_token_secret_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-connected_at"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "twitter_user_id"], name="account_unique_per_merchant"),
            models.UniqueConstraint(
                fields=["twitter_user_id"], condition=Q(status="active"), name="account_active_once_across_merchants"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "status"])]

    def __str__(self) -> str:
        return f"@{self.username}"

    @property
    def is_active(self) -> bool:
        return self.status == AccountStatus.ACTIVE
