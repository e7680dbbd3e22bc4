"""Flows, their numbered versions, executions and steps (CONTRACT.md "Automation flows").

A Flow is what merchants edit; activating it snapshots the definition as a FlowVersion, and an Execution runs the
version it started on to its end. An execution that must wait (a `wait`, a send's `delay`, `wait_for_reply`, a
window) keeps `due_at`: the resumer (automation/resumer.py) claims due executions in batches under a lease. Each
node visited is a Step. State changes are conditional updates in automation/engine.py."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from contacts.models import Contact
from mktx.iam.models import Merchant


class FlowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"


class Flow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="flows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=FlowStatus.choices, default=FlowStatus.DRAFT)
    trigger_type = models.CharField(max_length=30)
    trigger_config = models.JSONField(default=dict, blank=True)
    nodes = models.JSONField(default=list)
    connections = models.JSONField(default=list, blank=True)
    # None: every account of the merchant
    account_ids = models.JSONField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0, help_text="The latest activated version; 0: never activated.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # deleted flows keep their executions (cancelled) for history; the API no longer finds them
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["merchant", "status"], name="flow_merchant_status"),
            models.Index(fields=["trigger_type", "status"], name="flow_trigger_status"),
        ]

    def __str__(self) -> str:
        return self.name


class FlowVersion(models.Model):
    """The definition as it was when the flow was activated the `number`-th time."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    trigger_type = models.CharField(max_length=30)
    trigger_config = models.JSONField(default=dict, blank=True)
    nodes = models.JSONField(default=list)
    connections = models.JSONField(default=list, blank=True)
    account_ids = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["flow", "-number"]
        constraints = [models.UniqueConstraint(fields=["flow", "number"], name="flow_version_number")]

    def __str__(self) -> str:
        return f"{self.flow_id} v{self.number}"


class ExecutionStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class WaitKind(models.TextChoices):
    NONE = "", "Not waiting"
    TIME = "time", "A time"  # `wait`, a send's `delay`, a window, a retry's backoff, a full quota
    REPLY = "reply", "The contact's reply"  # wait_for_reply (its due time is the timeout)


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="flow_executions")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="executions")
    version = models.ForeignKey(FlowVersion, on_delete=models.PROTECT, related_name="executions")
    # erasing a contact removes its executions
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="flow_executions")
    status = models.CharField(max_length=10, choices=ExecutionStatus.choices, default=ExecutionStatus.RUNNING)
    current_node_id = models.CharField(max_length=100, blank=True)
    # when the execution is next due to advance (None: it is not waiting on time)
    due_at = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=10, choices=WaitKind.choices, blank=True, default=WaitKind.NONE)
    # how many times each node has been entered ({nodeId: n}): a send's idempotency key counts visits
    visits = models.JSONField(default=dict, blank=True)
    # node-scoped state (the retry count of a send, the reply that resumed a wait_for_reply)
    state = models.JSONField(default=dict, blank=True)
    depth = models.PositiveSmallIntegerField(default=1, help_text="1: started by an outside event; +1 per flow chain.")
    error = models.CharField(max_length=500, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_holder = models.CharField(max_length=32, blank=True, default="")
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["flow", "contact"], condition=Q(status="running"), name="execution_one_running"
            ),
        ]
        indexes = [
            models.Index(fields=["due_at"], condition=Q(status="running"), name="execution_due"),
            models.Index(fields=["contact", "waiting_for"], condition=Q(status="running"), name="execution_waiting"),
            models.Index(fields=["flow", "status", "-started_at"], name="execution_flow_status"),
            models.Index(fields=["flow", "contact"], name="execution_flow_contact"),
            models.Index(fields=["merchant", "started_at"], name="execution_merchant_started"),  # analytics
        ]

    def __str__(self) -> str:
        return f"execution {self.pk} ({self.status})"


class StepStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Step(models.Model):
    """One visit of a node by an execution."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=100)
    type = models.CharField(max_length=30)
    visit = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=StepStatus.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["execution", "id"]
        constraints = [models.UniqueConstraint(fields=["execution", "node_id", "visit"], name="step_visit")]
        indexes = [models.Index(fields=["started_at"], name="step_started")]  # analytics: a range's steps

    def __str__(self) -> str:
        return f"{self.node_id}#{self.visit} {self.status}"


class ResumerLane(models.Model):
    """At most MKTX_FLOW_LANES resumer loops run at once; each holds a lane by lease."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"resumer lane {self.pk}"
