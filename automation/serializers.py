"""The flows API's shapes. A flow's body is checked by automation.validation (paths as the client spells them);
the input serializers here describe it for the schema, and the output serializers shape the answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from automation.flows import MAX_ENROLL
from automation.models import Execution, ExecutionStatus, FlowStatus, WaitKind
from automation.validation import NODE_TYPES, TRIGGER_TYPES
from mktx.api.errors import InvalidInput
from mktx.api.serializers import CamelSerializer, StrictFieldsMixin

FLOW_KEYS = ("name", "description", "trigger", "nodes", "connections", "accountIds")
# what a GET answers besides: a client may PUT a flow back as it read it (these are not read)
READ_ONLY_KEYS = ("id", "status", "version", "executions", "createdAt", "updatedAt")


def flow_body(data: Any) -> Mapping[str, Any]:
    """The request body of a create or update: an object of the keys a flow has (a typo is an error, not a no-op;
    the read-only keys of a flow as the API shows it are let through and not read)."""
    if not isinstance(data, Mapping):
        raise InvalidInput("body", "must be a JSON object")
    unknown = sorted(str(key) for key in data if key not in FLOW_KEYS and key not in READ_ONLY_KEYS)
    if unknown:
        raise InvalidInput(unknown[0], "unknown field")
    return data


# --- a flow's parts (the same shape in and out) ------------------------------------------------------------------


class TriggerInput(CamelSerializer):
    """What starts the flow (CONTRACT.md: the trigger types and their configs)."""

    type = serializers.ChoiceField(choices=sorted(TRIGGER_TYPES))
    config = serializers.DictField(
        required=False, help_text='The trigger type\'s settings; every type may hold "reentry": never|after_completion'
    )


class TriggerOutput(CamelSerializer):
    """What starts the flow."""

    type = serializers.CharField(source="trigger_type")
    config = serializers.DictField(source="trigger_config")


class NodeSchema(CamelSerializer):
    """One step of the flow; `config` as its type needs it."""

    id = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=sorted(NODE_TYPES))
    config = serializers.DictField(required=False, help_text="The node type's settings (CONTRACT.md)")
    name = serializers.CharField(required=False, max_length=200)


BRANCH_HELP = (
    "condition: true|false; split: a weight key; wait_for_reply: replied|timeout; ai_reply: answered|escalated"
)


class ConnectionInput(CamelSerializer):
    """An edge from one node to the next; `branch` names which way out of a branching node."""

    from_node_id = serializers.CharField()
    to_node_id = serializers.CharField()
    branch = serializers.CharField(required=False, allow_null=True, help_text=BRANCH_HELP)


class ConnectionOutput(CamelSerializer):
    """An edge from one node to the next."""

    from_node_id = serializers.CharField()
    to_node_id = serializers.CharField()
    branch = serializers.CharField(required=False, help_text=f"Only when set. {BRANCH_HELP}")

    def to_representation(self, connection: Mapping[str, Any]) -> dict[str, Any]:
        # stored as the client sent it (camelCase keys), and `branch` only when set
        data = {"from_node_id": connection["fromNodeId"], "to_node_id": connection["toNodeId"]}
        if connection.get("branch") is not None:
            data["branch"] = connection["branch"]
        answer: dict[str, Any] = super().to_representation(data)
        return answer


class FlowInput(CamelSerializer):
    """A new flow (status draft). Checked as a whole: errors name the path (`nodes[2].config.templateId`)."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    trigger = TriggerInput()
    nodes = NodeSchema(many=True)
    connections = ConnectionInput(many=True, required=False)
    account_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_null=True, help_text="null or absent: every account"
    )


class FlowUpdateInput(FlowInput):
    """PUT: the keys given replace the stored ones; the others stay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for item in self.fields.values():
            item.required = False


# --- answers -------------------------------------------------------------------------------------------------------


class ExecutionCounts(CamelSerializer):
    """The flow's executions by status."""

    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class FlowOutput(CamelSerializer):
    """A flow; `execution_counts` is set on the instance by the view (one aggregate query for a page)."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    status = serializers.CharField(help_text=" | ".join(FlowStatus.values))
    trigger = TriggerOutput(source="*")
    nodes = NodeSchema(many=True)
    connections = ConnectionOutput(many=True)
    account_ids = serializers.ListField(
        child=serializers.UUIDField(), allow_null=True, help_text="null: every account of the merchant"
    )
    version = serializers.IntegerField(help_text="The latest activated version; 0: never activated")
    executions = ExecutionCounts(source="execution_counts")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExecutionOutput(CamelSerializer):
    """One contact's run through the flow."""

    id = serializers.UUIDField()
    flow_id = serializers.UUIDField()
    flow_version = serializers.IntegerField(source="version.number", help_text="The version it runs to its end")
    contact_id = serializers.UUIDField()
    status = serializers.CharField(help_text=f"{' | '.join(ExecutionStatus.values)} (running includes waiting)")
    current_node_id = serializers.CharField(allow_null=True, help_text="The node it is at (or waits at) while running")
    started_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    waiting_until = serializers.DateTimeField(
        source="due_at", allow_null=True, help_text="When a running execution that waits is next due"
    )
    error = serializers.CharField(allow_null=True, help_text="Why it failed or was cancelled")

    def to_representation(self, execution: Execution) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(execution)
        running = execution.status == ExecutionStatus.RUNNING
        data["currentNodeId"] = (execution.current_node_id or None) if running else None
        waiting = running and execution.waiting_for != WaitKind.NONE  # due now, between two steps: not waiting
        data["waitingUntil"] = data["waitingUntil"] if waiting else None
        data["error"] = execution.error or None
        return data


class StepOutput(CamelSerializer):
    """One visit of a node by an execution."""

    node_id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.DictField()


class ExecutionDetailOutput(ExecutionOutput):
    """`visited` (the steps, in order) is set on the instance by the view."""

    steps = StepOutput(many=True, source="visited")


class EnrollInput(StrictFieldsMixin, CamelSerializer):
    """The merchant's contacts to start the flow for (each at most once)."""

    contact_ids = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=MAX_ENROLL)


class SkippedOutput(CamelSerializer):
    """A contact the flow did not start for, and why."""

    contact_id = serializers.UUIDField()
    reason = serializers.CharField(help_text="Why it did not start (running, already_enrolled, ...)")


class EnrollOutput(CamelSerializer):
    """What an enrolment started and what it skipped."""

    enrolled = serializers.IntegerField()
    executions = ExecutionOutput(many=True, help_text="The executions started")
    skipped = SkippedOutput(many=True)
