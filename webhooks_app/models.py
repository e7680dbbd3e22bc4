from __future__ import annotations

from django.db import models

from mktx.accounts.models import Account
from webhooks_app.parser import KINDS


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    IGNORED = "ignored", "Ignored"


class InboundEvent(models.Model):
    """One event X delivered to the webhook, stored before anything else happens to it."""

    dedup_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=[(k, k.replace("_", " ")) for k in KINDS])
    for_user_id = models.CharField(max_length=32, blank=True, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=EventStatus.choices, default=EventStatus.PENDING)
    status_reason = models.CharField(max_length=300, blank=True)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["kind", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.dedup_key}"
