"""Writing a flow: create, update, activate (a numbered version), deactivate, delete, and a manual enrolment.

Definitions come in as `automation.validation.FlowDefinition` (the request body cleaned there); every state change
is a conditional UPDATE, so two requests racing on one flow cannot both win (CONTRACT.md "Automation flows")."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from automation import engine, triggers
from automation.models import Execution, Flow, FlowStatus, FlowVersion
from automation.validation import FlowDefinition, flow_definition_clean
from contacts.models import Contact
from mktx.api.errors import ApiError, InvalidInput, NotFoundError

EDITABLE = (FlowStatus.DRAFT, FlowStatus.INACTIVE)
MANUAL = "manual"
MAX_ENROLL = 1000


class FlowActive(ApiError):
    """PUT of an active flow (api-reference.md: "Cannot update active flows (deactivate first)")."""

    def __init__(self) -> None:
        super().__init__(
            "Cannot update an active flow: deactivate first",
            details={"field": "status", "reason": "deactivate first", "status": FlowStatus.ACTIVE},
        )


def flow_not_found(flow: Flow) -> NotFoundError:
    return NotFoundError("Flow not found", details={"id": str(flow.pk)})


def definition_of(flow: Flow) -> FlowDefinition:
    """The definition stored on a flow."""
    return FlowDefinition(
        name=flow.name,
        description=flow.description,
        trigger_type=flow.trigger_type,
        trigger_config=dict(flow.trigger_config or {}),
        nodes=list(flow.nodes or []),
        connections=list(flow.connections or []),
        account_ids=None if flow.account_ids is None else [str(pk) for pk in flow.account_ids],
    )


def definition_body(definition: FlowDefinition) -> dict[str, Any]:
    """The definition as a client sends it (what flow_definition_clean reads)."""
    return {
        "name": definition.name,
        "description": definition.description,
        "trigger": {"type": definition.trigger_type, "config": dict(definition.trigger_config)},
        "nodes": list(definition.nodes),
        "connections": list(definition.connections),
        "accountIds": None if definition.account_ids is None else list(definition.account_ids),
    }


def _graph(definition: FlowDefinition) -> dict[str, Any]:
    """The columns a flow and its versions share."""
    return {
        "trigger_type": definition.trigger_type,
        "trigger_config": dict(definition.trigger_config),
        "nodes": list(definition.nodes),
        "connections": list(definition.connections),
        "account_ids": None if definition.account_ids is None else [str(pk) for pk in definition.account_ids],
    }


def _columns(definition: FlowDefinition) -> dict[str, Any]:
    return {"name": definition.name, "description": definition.description or "", **_graph(definition)}


def _live(flow: Flow) -> Any:
    return Flow.objects.filter(pk=flow.pk, deleted_at__isnull=True)


def _reload(flow: Flow) -> Flow:
    """The flow as it is now; a 404 if it was deleted meanwhile."""
    flow.refresh_from_db()
    if flow.deleted_at is not None:
        raise flow_not_found(flow)
    return flow


def flow_create(*, merchant_id: uuid.UUID, definition: FlowDefinition) -> Flow:
    return Flow.objects.create(merchant_id=merchant_id, status=FlowStatus.DRAFT, version=0, **_columns(definition))


def flow_check_editable(flow: Flow) -> None:
    if flow.status not in EDITABLE:
        raise FlowActive()


def flow_update(*, flow: Flow, definition: FlowDefinition) -> Flow:
    """A draft or inactive flow takes the new definition; an active one (even one activated a moment ago) is a 400."""
    changed = _live(flow).filter(status__in=EDITABLE).update(updated_at=timezone.now(), **_columns(definition))
    flow = _reload(flow)
    if not changed:
        raise FlowActive()
    return flow


def flow_activate(*, flow: Flow) -> Flow:
    """draft or inactive -> active with the next version number and a snapshot of the definition, checked again
    (a template or user it names may be gone). An active flow is answered as it is: no new version."""
    with transaction.atomic():
        locked = _live(flow).select_for_update().first()
        if locked is None:
            raise flow_not_found(flow)
        if locked.status == FlowStatus.ACTIVE:
            return locked
        stored = definition_of(locked)
        definition = flow_definition_clean(merchant_id=locked.merchant_id, data=definition_body(stored))
        moved = (
            _live(locked)
            .filter(status__in=EDITABLE)
            .update(status=FlowStatus.ACTIVE, version=F("version") + 1, updated_at=timezone.now())
        )
        locked = _reload(locked)
        if moved:
            FlowVersion.objects.create(flow=locked, number=locked.version, **_graph(definition))
    return locked


def flow_deactivate(*, flow: Flow) -> Flow:
    """active -> inactive; its running executions are cancelled (`flow_deactivated`). Deactivating an inactive flow
    answers it as it is; a draft was never active: 400."""
    if flow.status == FlowStatus.DRAFT:
        raise InvalidInput("status", "the flow is a draft, not active: there is nothing to deactivate")
    with transaction.atomic():
        _live(flow).filter(status=FlowStatus.ACTIVE).update(status=FlowStatus.INACTIVE, updated_at=timezone.now())
        flow = _reload(flow)
        engine.executions_cancel(flow_id=flow.pk, reason="flow_deactivated")
    return flow


def flow_delete(*, flow: Flow) -> None:
    """The flow leaves the API (404 from now on) and stops; its executions stay, cancelled, for history."""
    now = timezone.now()
    with transaction.atomic():
        deleted = _live(flow).update(deleted_at=now, status=FlowStatus.INACTIVE, updated_at=now)
        if not deleted:
            raise flow_not_found(flow)
        engine.executions_cancel(flow_id=flow.pk, reason="flow_deleted")


def _enroll_contacts(flow: Flow, contact_ids: list[uuid.UUID]) -> list[Contact]:
    wanted = list(dict.fromkeys(contact_ids))
    found = {c.pk: c for c in Contact.objects.filter(merchant_id=flow.merchant_id, pk__in=wanted)}
    for i, contact_id in enumerate(contact_ids):
        if contact_id not in found:
            raise NotFoundError("Contact not found", details={"field": f"contactIds[{i}]", "id": str(contact_id)})
    return [found[pk] for pk in wanted]


def flow_enroll(*, flow: Flow, contact_ids: list[uuid.UUID]) -> list[tuple[Contact, Execution | str]]:
    """`POST /automation/flows/{id}/enroll`: an active `manual` flow starts for each of the merchant's contacts named
    (once each, in the order given); the engine says which started and why the others did not. The flow's state is
    checked before the contacts (a 400 for the flow before a 404 for an id), under its row lock: a deactivation
    waits for the enrolment and then cancels what it started."""
    if len(contact_ids) > MAX_ENROLL:
        raise InvalidInput("contactIds", f"at most {MAX_ENROLL} contacts at a time")
    with transaction.atomic():  # all or none; the executions advance once this commits
        locked = _live(flow).select_for_update().first()
        if locked is None:
            raise flow_not_found(flow)
        if locked.status != FlowStatus.ACTIVE:
            raise InvalidInput("status", f"the flow is {locked.status}: activate it first")
        if locked.trigger_type != MANUAL:
            raise InvalidInput(
                "trigger.type", f"only a manual flow can be enrolled into (this one is {locked.trigger_type})"
            )
        contacts = _enroll_contacts(locked, contact_ids)
        return triggers.contacts_enroll(flow=locked, contacts=contacts)
