"""The AI chatbot's rows (CONTRACT.md "AI chatbot"): a merchant's settings and FAQ, chat sessions (one per
conversation while active) with their turns, and token usage of the OpenAI-compatible engine per merchant and day.
A conversation's hand-off state (`ai_status`, the reason, the summary) lives on the Conversation (contacts)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from contacts.models import Conversation
from mktx.iam.models import Merchant


class Engine(models.TextChoices):
    BUILTIN = "builtin", "Built-in (offline)"
    OPENAI = "openai", "OpenAI-compatible"


class EscalationAssignment(models.TextChoices):
    NONE = "none", "None"
    ROUND_ROBIN = "round_robin", "Round robin"


DEFAULT_HANDOFF = "Thanks for your patience! I'm handing you over to a member of our team, who will reply here soon."


class AISettings(models.Model):
    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, primary_key=True, related_name="ai_settings")
    enabled = models.BooleanField(default=False)
    model = models.CharField(max_length=100, default="gpt-4o-mini")
    temperature = models.FloatField(default=0.7)
    max_tokens = models.PositiveIntegerField(default=500)
    auto_escalation_threshold = models.FloatField(default=0.6)
    system_prompt = models.TextField(blank=True, max_length=10_000)
    engine = models.CharField(max_length=10, choices=Engine.choices, default=Engine.BUILTIN)
    auto_reply = models.BooleanField(default=False)
    handoff_message = models.CharField(max_length=1_000, default=DEFAULT_HANDOFF)
    session_timeout_minutes = models.PositiveIntegerField(default=30)
    escalation_assignment = models.CharField(
        max_length=12, choices=EscalationAssignment.choices, default=EscalationAssignment.NONE
    )
    order_lookup_url = models.URLField(max_length=500, blank=True)
    # write-only through the API: stored encrypted (mktx.accounts.crypto), never returned nor logged
    order_lookup_secret_encrypted = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AI settings"
        verbose_name_plural = "AI settings"

    def __str__(self) -> str:
        return f"AI settings of {self.merchant_id}"


class FAQ(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="faqs")
    question = models.CharField(max_length=1_000)
    answer = models.TextField(max_length=4_000)
    intent = models.CharField(max_length=30, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["merchant", "created_at"], name="faq_merchant_created")]

    def __str__(self) -> str:
        return self.question[:80]


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"
    ESCALATED = "escalated", "Escalated"


class ChatSession(models.Model):
    """The bot's memory of one conversation while it is active: the turns, the current intent and the slots carried
    across turns. Ended after `sessionTimeoutMinutes` idle (the next message starts a new one)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="chat_sessions")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="chat_sessions")
    status = models.CharField(max_length=10, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    current_intent = models.CharField(max_length=30, blank=True)
    slots = models.JSONField(default=dict, blank=True)
    # low-confidence turns in a row: the first asks to rephrase, the second escalates
    low_confidence_streak = models.PositiveSmallIntegerField(default=0)
    # held while one answer of the conversation is being worked out (chatbot/sessions.py session_hold): two DMs
    # that arrive together are answered one after the other, each seeing what the other carried
    answering_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"], condition=Q(status="active"), name="chat_session_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"session {self.pk} ({self.status})"


class TurnRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class ChatTurn(models.Model):
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="turns")
    role = models.CharField(max_length=10, choices=TurnRole.choices)
    content = models.TextField()
    intent = models.CharField(max_length=30, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    engine = models.CharField(max_length=10, blank=True)
    fallback_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["session", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class TokenUsage(models.Model):
    """The OpenAI-compatible engine's tokens, per merchant and day."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="ai_token_usage")
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "day"], name="token_usage_day")]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.day}"
