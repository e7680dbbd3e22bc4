"""The state machine of an execution (being written by the lead)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from automation.models import Execution, ExecutionStatus, Step, StepStatus


def executions_cancel(*, flow_id: Any = None, contact_id: Any = None, reason: str) -> int:
    """Cancel the running executions of a flow, of a contact, or of both; their waiting step too. The count."""
    if flow_id is None and contact_id is None:
        raise ValueError("executions_cancel needs a flow or a contact")
    scope = Q(status=ExecutionStatus.RUNNING)
    if flow_id is not None:
        scope &= Q(flow_id=flow_id)
    if contact_id is not None:
        scope &= Q(contact_id=contact_id)
    now = timezone.now()
    ids = list(Execution.objects.filter(scope).values_list("pk", flat=True))
    cancelled = Execution.objects.filter(scope, pk__in=ids).update(
        status=ExecutionStatus.CANCELLED, error=reason, completed_at=now, due_at=None, waiting_for=""
    )
    Step.objects.filter(execution_id__in=ids, status=StepStatus.WAITING).update(
        status=StepStatus.CANCELLED, finished_at=now, detail={"reason": reason}
    )
    return cancelled
