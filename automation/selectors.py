"""Reads of flows and their executions, scoped to a merchant, in a constant number of queries per page."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, Step


def flows_of(merchant_id: uuid.UUID) -> QuerySet[Flow]:
    """The merchant's flows; deleted ones are gone for the API."""
    return Flow.objects.filter(merchant_id=merchant_id, deleted_at__isnull=True).order_by("-created_at", "-id")


def flow_execution_counts(flow_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """{flow id: {status: count}} for every status, in one aggregate query for a whole page of flows."""
    ids = list(flow_ids)
    counts = {pk: dict.fromkeys(ExecutionStatus.values, 0) for pk in ids}
    if not ids:
        return counts
    rows = Execution.objects.filter(flow_id__in=ids).order_by().values_list("flow_id", "status").annotate(n=Count("id"))
    for flow_id, status, n in rows:
        counts[flow_id][status] = n
    return counts


def executions_of(flow: Flow) -> QuerySet[Execution]:
    """A flow's executions, newest first, with the version each runs."""
    return (
        Execution.objects.filter(flow_id=flow.pk, merchant_id=flow.merchant_id)
        .select_related("version")
        .order_by("-started_at", "-id")
    )


def executions_filter(
    executions: QuerySet[Execution], *, status: str | None = None, contact_id: uuid.UUID | None = None
) -> QuerySet[Execution]:
    if status:
        executions = executions.filter(status=status)
    if contact_id is not None:
        executions = executions.filter(contact_id=contact_id)
    return executions


def execution_of(flow: Flow, execution_id: uuid.UUID) -> Execution | None:
    """One execution of this flow (another flow's id, even of the same merchant, is None)."""
    return executions_of(flow).filter(pk=execution_id).first()


def execution_steps(execution: Execution) -> QuerySet[Step]:
    """The nodes the execution visited, in the order it visited them."""
    return Step.objects.filter(execution_id=execution.pk).order_by("id")


def executions_by_id(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Execution]:
    """Executions with their versions in one query (the enrol answer)."""
    return {e.pk: e for e in Execution.objects.filter(pk__in=list(ids)).select_related("version")}


def flows_using_template(template: Any) -> dict[str, list[str]]:
    """The merchant's active flows that send `template` (campaigns/hooks.py asks before a template is deleted)."""
    active = flows_of(template.merchant_id).filter(status=FlowStatus.ACTIVE).only("pk", "nodes")
    template_id = str(template.pk)
    using = [
        str(flow.pk)
        for flow in active
        if any((node.get("config") or {}).get("templateId") == template_id for node in flow.nodes or [])
    ]
    return {"flowIds": using} if using else {}
