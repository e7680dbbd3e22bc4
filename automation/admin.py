"""The automation back office (issue 13 item 9): flows with their graph as readable text, their version and their
executions counted by status, activated, deactivated and deleted through the services the API uses; executions
read-only with their steps, cancelled through the engine.

Nothing here writes a flow or an execution itself: a definition is edited through the API (its checks live in
automation/validation.py), so the flow's page is read-only and its actions call automation/flows.py; an execution
changes only through automation/engine.py."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html

from automation.engine import executions_cancel
from automation.flows import flow_activate, flow_deactivate, flow_delete
from automation.graph import entry_node, next_nodes
from automation.models import Execution, ExecutionStatus, Flow, FlowVersion, ResumerLane, Step
from automation.validation import BRANCHES, CONFIG_FIELDS, TRIGGER_FIELDS
from contacts.models import Contact
from mktx.api.errors import ApiError

CANCELLED_BY_STAFF = "cancelled_by_staff"
CANCEL_CHUNK = 1000
SHORT_TEXT = 30  # a config's strings as the graph shows them
SHORT_VALUE = 60  # a config's other values, as JSON
# the branches of the fixed branching types in the order the graph lists them (a split's: its weights' order)
BRANCH_ORDER = ("true", "false", "replied", "timeout", "answered", "escalated")


# --- the graph as text ----------------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= SHORT_TEXT else value[: SHORT_TEXT - 3] + "..."
        return json.dumps(text, ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHORT_VALUE else text[: SHORT_VALUE - 3] + "..."


def _config_text(config: Any, order: tuple[str, ...] = ()) -> str:
    """`(content: "Hi...", delay: 60)`: the keys that are set, values shortened, in the order of the config's fields
    (a JSON column may not keep the client's); "" when none is."""
    if not isinstance(config, Mapping):
        return ""
    keys = [key for key in order if key in config] + sorted(str(key) for key in config if key not in order)
    shown = [f"{key}: {_short(config[key])}" for key in keys if config[key] not in (None, "", [], {})]
    return f" ({', '.join(shown)})" if shown else ""


def _branch_names(node: Mapping[str, Any], following: Mapping[str | None, str]) -> list[str]:
    """The branches a node's connections carry, in reading order; [] for a plain node (one unnamed connection)."""
    config = node.get("config")
    weights = config.get("weights") if isinstance(config, Mapping) else None
    if node.get("type") == "split" and isinstance(weights, Mapping):
        names = [str(name) for name in weights]
    else:
        fixed = BRANCHES.get(str(node.get("type")), frozenset())
        names = [name for name in BRANCH_ORDER if name in fixed]
    return names + [str(name) for name in following if name is not None and name not in names]


def _reading_order(
    nodes: list[Mapping[str, Any]], following: Mapping[str, Mapping[str | None, str]], entry: str | None
) -> list[Mapping[str, Any]]:
    """The nodes from the entry on, each after the one that leads to it first; any not reached after them."""
    by_id = {str(node.get("id")): node for node in nodes}
    order: list[str] = []
    queue = [entry] if entry in by_id else []
    while queue:
        current = queue.pop(0)
        if current in order:
            continue
        order.append(current)
        queue.extend(target for target in following.get(current, {}).values() if target in by_id)
    return [by_id[pk] for pk in order] + [node for node in nodes if str(node.get("id")) not in order]


def graph_text(*, trigger_type: str, trigger_config: Any, nodes: Any, connections: Any, account_ids: Any = None) -> str:
    """A definition as lines of text: the trigger, the accounts, then one line per node with where it goes on
    (`node-1 send_message (content: "Hi...")  -> node-2`, `c condition (...)  true -> a | false -> b`); the entry
    is marked with `>`."""
    trigger_fields = (*TRIGGER_FIELDS.get(trigger_type, ()), "reentry")
    lines = [f"trigger: {trigger_type}{_config_text(trigger_config, trigger_fields)}"]
    lines.append("accounts: all" if account_ids is None else f"accounts: {', '.join(map(str, account_ids)) or '-'}")
    nodes = [node for node in nodes or [] if isinstance(node, Mapping)]
    connections = [c for c in connections or [] if isinstance(c, Mapping) and "fromNodeId" in c and "toNodeId" in c]
    following: dict[str, dict[str | None, str]] = {str(node.get("id")): {} for node in nodes}
    if nodes:
        following |= next_nodes(
            [{"id": str(n.get("id"))} for n in nodes], [c for c in connections if c["fromNodeId"] in following]
        )
    entry: str | None = None
    if not nodes:
        lines.append("(no nodes)")
    else:
        try:
            entry = entry_node([{"id": str(n.get("id"))} for n in nodes], connections)
        except ApiError as exc:
            lines.append(f"no single entry: {exc.message}")
    for node in _reading_order(nodes, following, entry):
        node_id = str(node.get("id"))
        label = f" [{node['name']}]" if node.get("name") else ""
        config = _config_text(node.get("config"), CONFIG_FIELDS.get(str(node.get("type")), ()))
        line = f"{'>' if node_id == entry else ' '} {node_id} {node.get('type')}{label}{config}"
        goes = following.get(node_id, {})
        branches = _branch_names(node, goes)
        if branches:
            line += "  " + " | ".join(f"{name} -> {goes.get(name) or '(end)'}" for name in branches)
        elif node.get("type") != "end" or goes:
            line += f"  -> {goes.get(None) or '(end)'}"
        lines.append(line)
    return "\n".join(lines)


def _graph_html(source: Flow | FlowVersion) -> str:
    text = graph_text(
        trigger_type=source.trigger_type,
        trigger_config=source.trigger_config,
        nodes=source.nodes,
        connections=source.connections,
        account_ids=source.account_ids,
    )
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


# --- flows ----------------------------------------------------------------------------------------------------------


def _count_of(status: str) -> Coalesce:
    """A flow's executions in one status: a subquery per row of the page (the (flow, status) index answers it)."""
    counted = (
        Execution.objects.filter(flow=OuterRef("pk"), status=status)
        .order_by()
        .values("flow")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("no", "yes"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


class VersionInline(admin.TabularInline):
    model = FlowVersion
    extra = 0
    can_delete = False
    fields = ("number", "trigger_type", "graph", "created_at")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="graph (> the entry)")
    def graph(self, version: FlowVersion) -> str:
        return _graph_html(version)


def _flow_action(service: Callable[..., Any], verb: str, done: Callable[[Any], str]) -> Any:
    """An action that runs a flow service on each selected flow and reports each one's outcome or refusal."""

    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            try:
                result = service(flow=flow)
            except ApiError as exc:
                modeladmin.message_user(request, f"{flow.name}: {exc.message}", messages.ERROR)
            else:
                modeladmin.message_user(request, f"{flow.name}: {done(result)}", messages.SUCCESS)

    run.__name__ = f"{verb.split()[0].lower()}_flows"
    return admin.action(description=f"{verb} selected flows", permissions=["manage"])(run)


STATUS_COUNTS = (
    ExecutionStatus.RUNNING,
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
)


FLOW_FIELDS = ("id", "merchant", "name", "description", "status", "version", "deleted_at")
FLOW_GRAPH = ("graph",)
FLOW_COUNTS = ("running", "completed", "failed", "cancelled")
FLOW_DEFINITION = ("trigger_type", "trigger_config", "nodes", "connections", "account_ids")
FLOW_DATES = ("created_at", "updated_at")


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    """Read-only but for its actions: a definition is edited through the API, a flow is activated, deactivated and
    deleted (left for history, its executions cancelled) by the services."""

    list_display = (
        "name",
        "merchant",
        "status_shown",
        "trigger_type",
        "version",
        "running",
        "completed",
        "failed",
        "cancelled",
        "updated_at",
    )
    list_filter = ("status", "trigger_type", DeletedFilter, "merchant")
    list_select_related = ("merchant",)
    search_fields = ("name", "merchant__name")
    readonly_fields = (*FLOW_FIELDS, *FLOW_GRAPH, *FLOW_COUNTS, *FLOW_DEFINITION, *FLOW_DATES)
    fieldsets = (
        (None, {"fields": FLOW_FIELDS}),
        ("graph", {"fields": FLOW_GRAPH}),
        ("executions", {"fields": FLOW_COUNTS}),
        ("definition (JSON)", {"classes": ("collapse",), "fields": FLOW_DEFINITION}),
        ("dates", {"fields": FLOW_DATES}),
    )
    inlines = [VersionInline]
    actions = [
        _flow_action(flow_activate, "Activate", lambda flow: f"active, version {flow.version}"),
        _flow_action(flow_deactivate, "Deactivate", lambda flow: "inactive, its running executions cancelled"),
        _flow_action(flow_delete, "Delete (cancel their executions)", lambda _: "deleted, its executions cancelled"),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flow]:
        counts = {f"_{status}": _count_of(status) for status in STATUS_COUNTS}
        return super().get_queryset(request).annotate(**counts)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which checks the definition

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # edited through the API; the page shows the flow, the actions change its state

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the delete action goes through flow_delete, which keeps the executions for history

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Whether the activate / deactivate / delete actions are offered: the staff who may change flows."""
        return bool(request.user.has_perm("automation.change_flow"))

    @admin.display(description="status", ordering="status")
    def status_shown(self, flow: Flow) -> str:
        return f"{flow.get_status_display()} (deleted)" if flow.deleted_at else flow.get_status_display()

    @admin.display(description="graph (> the entry)")
    def graph(self, flow: Flow) -> str:
        return _graph_html(flow)

    def _executions(self, flow: Flow, status: str) -> str:
        count = getattr(flow, f"_{status}", None)
        if count is None:
            count = flow.executions.filter(status=status).count()
        url = reverse("admin:automation_execution_changelist")
        return format_html('<a href="{}?flow__id__exact={}&amp;status__exact={}">{}</a>', url, flow.pk, status, count)

    @admin.display(description="running", ordering="_running")
    def running(self, flow: Flow) -> str:
        return self._executions(flow, ExecutionStatus.RUNNING)

    @admin.display(description="completed", ordering="_completed")
    def completed(self, flow: Flow) -> str:
        return self._executions(flow, ExecutionStatus.COMPLETED)

    @admin.display(description="failed", ordering="_failed")
    def failed(self, flow: Flow) -> str:
        return self._executions(flow, ExecutionStatus.FAILED)

    @admin.display(description="cancelled", ordering="_cancelled")
    def cancelled(self, flow: Flow) -> str:
        return self._executions(flow, ExecutionStatus.CANCELLED)


# --- executions -----------------------------------------------------------------------------------------------------


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepInline(ReadOnly, admin.TabularInline):
    model = Step
    extra = 0
    can_delete = False
    fields = ("node_id", "type", "visit", "status", "started_at", "finished_at", "detail")
    readonly_fields = fields


class ContactFilter(admin.SimpleListFilter):
    """The executions of one contact (`?contact=<id>`, what the contact column links to): listing every contact
    as a choice would load them all, so only the chosen one is shown."""

    title = "contact"
    parameter_name = "contact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = _uuid(self.value())
        contact = Contact.objects.filter(pk=chosen).first() if chosen else None
        return [(str(contact.pk), str(contact))] if contact is not None else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        chosen = _uuid(self.value())
        return queryset.filter(contact_id=chosen) if chosen else queryset.none()


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value).strip()) if value else None
    except ValueError:
        return None


def _chunks(ids: Iterable[Any]) -> Iterable[list[Any]]:
    it = iter(ids)
    while chunk := list(itertools.islice(it, CANCEL_CHUNK)):
        yield chunk


@admin.register(Execution)
class ExecutionAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: an execution moves only through the engine; staff may cancel running ones."""

    list_display = (
        "id",
        "flow",
        "contact_shown",
        "status",
        "current_node_id",
        "waiting_until",
        "error",
        "started_at",
        "completed_at",
    )
    list_filter = ("status", "flow", ContactFilter)
    list_select_related = ("flow", "contact")
    search_fields = ("contact__username", "=contact__twitter_user_id")
    search_help_text = "A contact's username or X user id, or an execution's (or a contact's) id."
    fields = (
        "id",
        "merchant",
        "flow",
        "version_number",
        "contact",
        "status",
        "current_node_id",
        "waiting_for",
        "due_at",
        "error",
        "depth",
        "visits",
        "state",
        "lease_holder",
        "lease_until",
        "started_at",
        "completed_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = [StepInline]
    show_full_result_count = False
    actions = ["cancel_executions"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Execution], search_term: str
    ) -> tuple[QuerySet[Execution], bool]:
        """An id looked up by its index (the execution's or its contact's); anything else by the contact's name."""
        as_id = _uuid(search_term)
        if as_id is not None:
            return queryset.filter(pk=as_id) | queryset.filter(contact_id=as_id), False
        return super().get_search_results(request, queryset, search_term.strip().lstrip("@"))

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("automation.change_execution"))

    @admin.action(description="Cancel selected executions (the running ones)", permissions=["cancel"])
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        running = list(queryset.filter(status=ExecutionStatus.RUNNING).order_by().values_list("pk", flat=True))
        cancelled = sum(executions_cancel(execution_ids=chunk, reason=CANCELLED_BY_STAFF) for chunk in _chunks(running))
        level = messages.SUCCESS if cancelled else messages.WARNING
        self.message_user(request, f"Cancelled {cancelled} running execution(s).", level)

    @admin.display(description="contact", ordering="contact__username")
    def contact_shown(self, execution: Execution) -> str:
        url = reverse("admin:automation_execution_changelist")
        return format_html(
            '<a href="{}?contact={}" title="its executions">{}</a>', url, execution.contact_id, execution.contact
        )

    @admin.display(description="waiting until", ordering="due_at")
    def waiting_until(self, execution: Execution) -> Any:
        if execution.due_at is None:
            return None
        when = formats.localize(timezone.localtime(execution.due_at))
        return f"{when} ({execution.get_waiting_for_display().lower()})" if execution.waiting_for else when

    @admin.display(description="version")
    def version_number(self, execution: Execution) -> int:
        return execution.version.number


@admin.register(ResumerLane)
class ResumerLaneAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: which resumer loop holds each lane, and until when (automation/resumer.py keeps the rows)."""

    list_display = ("id", "holder", "lease_until")
    search_fields = ("holder",)
    fields = list_display
    readonly_fields = list_display
