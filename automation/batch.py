"""The batch form of `engine.execution_advance`, for the resumer: the executions of one claim advance together,
node by node, as the state machine of engine.py says, but a node whose runner has a set-based form (`MANY`) runs
once for all the executions at it, and their outcomes are recorded in a handful of statements (the executions'
rows from one VALUES list, the new steps in one INSERT), so 100,000 due executions cost thousands of queries, not
millions. An execution at any other node (a send, which calls X; the contact and conversation actions) goes on
alone through `execution_advance`, under the same lease.

Each group's runner and record share one transaction, after the group's rows are locked (`SELECT ... FOR
UPDATE`) and found still running, under this lease, at this node: an execution cancelled or taken over meanwhile
drops out of the group before anything is written for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from automation import runners
from automation.engine import (
    Graph,
    Move,
    context_for,
    execution_advance,
    graph_of,
    move_for,
    run_safely,
    step_of,
    trigger_depth_set,
    wake_if_soon,
)
from automation.models import Execution, ExecutionStatus, Step, StepStatus
from automation.runners import Outcome, StepContext
from automation.triggers import versions_memo
from contacts.models import Contact
from contacts.segments import compile_conditions
from contacts.services.contacts import contacts_tags_add
from mktx.bulk import values_update

ROUNDS = 50  # nodes a batch advances before what is left goes on alone


def _each(runner: Callable[[StepContext], Outcome]) -> Callable[[list[StepContext]], list[Outcome]]:
    """A runner with no writes, over a group."""
    return lambda contexts: [run_safely(runner, context) for context in contexts]


def _conditions_many(contexts: list[StepContext]) -> list[Outcome]:
    """One query for a group: which of its contacts match the node's conditions."""
    first = contexts[0]
    matches = compile_conditions(merchant_id=first.contact.merchant_id, conditions=first.config["conditions"])
    true = set(Contact.objects.filter(matches, pk__in=[c.contact.pk for c in contexts]).values_list("pk", flat=True))
    return [Outcome.done(branch="true" if c.contact.pk in true else "false") for c in contexts]


def _add_tag_many(contexts: list[StepContext]) -> list[Outcome]:
    tags = list(contexts[0].config["tags"])
    with versions_memo():
        names = contacts_tags_add(contacts=[c.contact for c in contexts], tags=tags)
    return [Outcome.done({"tags": tags, "contactTags": names.get(c.contact.pk, [])}) for c in contexts]


def _pure(context: StepContext) -> bool:
    """A wait whose window needs the account's time zone goes alone (its account is not loaded here)."""
    return not (context.node["type"] == "wait" and context.config.get("window"))


MANY: dict[str, Callable[[list[StepContext]], list[Outcome]]] = {
    "wait": _each(runners.wait),
    "wait_for_reply": _each(runners.wait_for_reply),
    "split": _each(runners.split),
    "end": _each(runners.end),
    "condition": _conditions_many,
    "add_tag": _add_tag_many,
}


def executions_advance_many(*, execution_ids: list[Any], holder: str) -> dict[str, int]:
    """Advance the executions leased to `holder`; answers how many ended each way (for the task log)."""
    executions = list(
        Execution.objects.select_related("version", "contact").filter(
            pk__in=execution_ids, status=ExecutionStatus.RUNNING, lease_holder=holder
        )
    )
    results: dict[str, int] = defaultdict(int)
    alone: list[Execution] = []
    for _ in range(ROUNDS):
        groups: dict[tuple[Any, int, str], list[tuple[Execution, Graph, StepContext]]] = defaultdict(list)
        for execution in executions:
            graph = graph_of(execution.version)
            node = graph.nodes.get(execution.current_node_id)
            context = context_for(execution, graph, node) if node is not None else None
            if context is None or node is None or node["type"] not in MANY or not _pure(context):
                alone.append(execution)
                continue
            key = (execution.flow_id, execution.version.number, node["id"])
            groups[key].append((execution, graph, context))
        going_on: list[Execution] = []
        for group in groups.values():
            for execution, move in _advance_group(group, holder):
                if move.result == "next":
                    going_on.append(execution)
                else:
                    results[move.result] += 1
        if not going_on:
            break
        executions = going_on
    else:
        alone.extend(executions)
    for execution in alone:
        results[execution_advance(execution_id=execution.pk, holder=holder)] += 1
    return dict(results)


COLUMNS = (
    ("k", Execution._meta.pk),
    ("at_node", Execution._meta.get_field("current_node_id")),
    ("node", Execution._meta.get_field("current_node_id")),
    ("status", Execution._meta.get_field("status")),
    ("due", Execution._meta.get_field("due_at")),
    ("waiting", Execution._meta.get_field("waiting_for")),
    ("visits", Execution._meta.get_field("visits")),
    ("state", Execution._meta.get_field("state")),
    ("error", Execution._meta.get_field("error")),
    ("done", Execution._meta.get_field("completed_at")),
    ("holder", Execution._meta.get_field("lease_holder")),
    ("lease", Execution._meta.get_field("lease_until")),
)
ASSIGNMENTS = (
    "current_node_id = v.node, status = v.status, due_at = v.due, waiting_for = v.waiting, visits = v.visits, "
    "state = v.state, error = v.error, completed_at = v.done, lease_holder = v.holder, lease_until = v.lease, "
    "updated_at = %s"
)


def _advance_group(group: list[tuple[Execution, Graph, StepContext]], holder: str) -> list[tuple[Execution, Move]]:
    """One node's step for a group of executions at it: run once, recorded together."""
    with transaction.atomic():
        ids = [execution.pk for execution, _, _ in group]
        held = set(
            Execution.objects.select_for_update()
            .filter(pk__in=ids, status=ExecutionStatus.RUNNING, lease_holder=holder)
            .order_by("pk")  # key order, as executions_cancel locks: never a deadlock between the two
            .values_list("pk", flat=True)
        )
        group = [item for item in group if item[0].pk in held]
        if not group:
            return []
        node_type = group[0][2].node["type"]
        restore = trigger_depth_set(max(execution.depth for execution, _, _ in group))
        try:
            outcomes = MANY[node_type]([context for _, _, context in group])
        finally:
            restore()
        now = timezone.now()
        moves = [move_for(e, g, c, o, now) for (e, g, c), o in zip(group, outcomes, strict=True)]
        _write(group, outcomes, moves, holder, now)
    wake_if_soon(moves, now)
    for (execution, _, _), move in zip(group, moves, strict=True):
        for field, value in move.changes.items():
            setattr(execution, field, value)
    return [(execution, move) for (execution, _, _), move in zip(group, moves, strict=True)]


def _row(execution: Execution, context: StepContext, move: Move) -> tuple[Any, ...]:
    changes = move.changes
    return (
        execution.pk,
        context.node["id"],
        changes.get("current_node_id", execution.current_node_id),
        changes.get("status", ExecutionStatus.RUNNING),
        changes["due_at"],
        changes["waiting_for"],
        changes["visits"],
        changes["state"],
        changes.get("error", execution.error),
        changes.get("completed_at"),
        changes.get("lease_holder", execution.lease_holder),
        changes.get("lease_until", execution.lease_until),
    )


def _write(
    group: list[tuple[Execution, Graph, StepContext]], outcomes: list[Outcome], moves: list[Move], holder: str, now: Any
) -> None:
    rows = [_row(e, c, m) for (e, _, c), m in zip(group, moves, strict=True)]
    values_update(
        Execution,
        COLUMNS,
        rows,
        assignments=ASSIGNMENTS,
        where="t.current_node_id = v.at_node AND t.lease_holder = %s",
        where_params=[now, holder],
    )
    new_steps: list[Step] = []
    finished: dict[str, list[Any]] = defaultdict(list)
    for (execution, _, context), outcome in zip(group, outcomes, strict=True):
        step = step_of(execution.pk, context, outcome, now)
        if not context.resumed:
            new_steps.append(step)
        elif outcome.kind != "wait" and not step.detail:
            finished[step.status].append(execution.pk)
        else:  # a resumed step with a detail of its own (a reply's branch): rare, one by one
            Step.objects.filter(execution_id=execution.pk, node_id=step.node_id, visit=step.visit).update(
                status=step.status, finished_at=step.finished_at, detail=step.detail
            )
    if new_steps:
        Step.objects.bulk_create(new_steps)
    node_id = group[0][2].node["id"]
    for status, ids in finished.items():
        Step.objects.filter(execution_id__in=ids, node_id=node_id, status=StepStatus.WAITING).update(
            status=status, finished_at=now
        )
