"""The batch form of `engine.execution_advance`, for the resumer: the executions of one claim advance together,
node by node, as the state machine of engine.py says, but a node whose runner has a set-based form (`MANY`) runs
once for all the executions at it, and the whole claim's progress is written at its end in a handful of statements
(the executions' rows from one table of values, the new steps in one INSERT), so 100,000 due executions cost
thousands of queries, not millions. An execution that reaches any other node (a send, which calls X; the contact
and conversation actions) has its progress written with the others, then goes on alone through
`execution_advance`, under the same lease.

The claim is one transaction: its rows are locked first (`SELECT ... FOR UPDATE`) and only those still running
under this lease go on, so an execution cancelled or taken over meanwhile is left as it is; the node runners'
writes (tags) commit with the steps that record them, or not at all.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from automation import runners
from automation.engine import (
    LEASE,
    Graph,
    Move,
    context_for,
    execution_advance,
    executions_cancel,
    graph_of,
    move_for,
    run_safely,
    step_of,
    trigger_depth_set,
    wake_if_soon,
)
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, FlowVersion, Step, StepStatus
from automation.runners import Outcome, StepContext
from contacts.models import Contact
from contacts.segments import compile_conditions
from contacts.services.contacts import contacts_tags_add
from mktx.bulk import values_insert, values_update
from mktx.memo import batch_memo

logger = logging.getLogger("mktx.automation")

ROUNDS = 50  # nodes a batch advances before what is left goes on alone
# the executions that go on alone (each send calls X) get this long; the rest of the claim is handed back, due, for
# the next claim of any loop. A claim of sends that outlasted its lease was taken again by another loop while this
# one still worked through it (found by bench/chaos.py: 10,000 executions at a send node crawled at 3 a second)
ALONE_BUDGET = LEASE.total_seconds() / 3


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
    with batch_memo():  # the flows a trigger looks for, read once for the thousands of contacts tagged
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
    with transaction.atomic():
        executions = _locked(execution_ids, holder)
        claim = _Claim(holder)
        pending = executions
        for _ in range(ROUNDS):
            groups = claim.groups(pending)
            if not groups:
                break
            pending = [execution for group in groups.values() for execution in claim.run(group)]
        else:  # still going after ROUNDS nodes: on alone (those that stopped at a node of their own already are)
            claim.alone.extend(pending)
        claim.write()
    wake_if_soon(claim.moves, timezone.now())
    deadline = time.monotonic() + ALONE_BUDGET
    for i, execution in enumerate(claim.alone):
        if i and time.monotonic() > deadline:  # the rest go back, due as they are, before their lease could run out
            left = [e.pk for e in claim.alone[i:]]
            Execution.objects.filter(pk__in=left, lease_holder=holder).update(lease_until=None, lease_holder="")
            claim.results["handed back"] += len(left)
            break
        try:
            claim.results[execution_advance(execution_id=execution.pk, holder=holder)] += 1
        except DatabaseError:  # a deadlock, a lost connection: its lease ends and it is taken again
            logger.exception("flow execution %s: database error; it is taken again when its lease ends", execution.pk)
            claim.results["database error"] += 1
    return dict(claim.results)


CONTACT_FIELDS = ("id", "merchant_id", "account_id", "tag_names", "opted_out")


def _locked(execution_ids: list[Any], holder: str) -> list[Execution]:
    """The claim's executions still running under this lease, their rows locked in key order (as
    executions_cancel locks: never a deadlock between the two), each with its contact's few fields and its version
    (read once per version: every execution of a flow shares it)."""
    executions = list(
        Execution.objects.select_for_update(of=("self",))
        .filter(pk__in=execution_ids, status=ExecutionStatus.RUNNING, lease_holder=holder)
        .select_related("contact")
        .only(*(f.name for f in Execution._meta.concrete_fields), *(f"contact__{f}" for f in CONTACT_FIELDS))
        .order_by("pk")
    )
    stopped = set(
        Flow.objects.filter(pk__in={execution.flow_id for execution in executions})
        .exclude(status=FlowStatus.ACTIVE)
        .values_list("pk", flat=True)
    )
    if stopped:  # started by a trigger as its flow was deactivated: cancelled, as the deactivation would have
        executions_cancel(
            execution_ids=[execution.pk for execution in executions if execution.flow_id in stopped],
            reason="flow_inactive",
        )
        executions = [execution for execution in executions if execution.flow_id not in stopped]
    versions = FlowVersion.objects.in_bulk({execution.version_id for execution in executions})
    for execution in executions:
        execution.version = versions[execution.version_id]
    return executions


class _Claim:
    """The claim's progress in memory: each group's outcomes are applied to its executions at once, and the rows
    are written together at the end (`write`), one UPDATE for the executions, one INSERT for the new steps."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self.results: dict[str, int] = defaultdict(int)
        self.alone: list[Execution] = []
        self.moves: list[Move] = []
        self.touched: dict[Any, Execution] = {}
        self.new_steps: list[Step] = []
        self.finished: dict[str, list[Any]] = defaultdict(list)  # step status -> executions whose wait ended
        self.finished_with_detail: list[Step] = []

    def groups(self, executions: list[Execution]) -> dict[tuple[Any, int, str, int], list[Item]]:
        """The executions at a node with a set-based form, by version and node; the others go alone."""
        groups: dict[tuple[Any, int, str, int], list[Item]] = defaultdict(list)
        for execution in executions:
            graph = graph_of(execution.version)
            node = graph.nodes.get(execution.current_node_id)
            if node is None or node["type"] not in MANY:
                self.alone.append(execution)
                continue
            context = context_for(execution, graph, node)
            if not _pure(context):
                self.alone.append(execution)
                continue
            # by depth too: the flows a step triggers start one deeper than its own execution
            key = (execution.flow_id, execution.version.number, node["id"], execution.depth)
            groups[key].append((execution, graph, context))
        return groups

    def run(self, group: list[Item]) -> list[Execution]:
        """One node's step for a group at it; the executions that go on to a next node."""
        restore = trigger_depth_set(group[0][0].depth)
        try:
            with transaction.atomic():  # a savepoint: a node's error fails its group, not the whole claim
                outcomes = MANY[group[0][2].node["type"]]([context for _, _, context in group])
        except DatabaseError:  # passing (a deadlock with an inbound DM, a lock timeout): each goes on alone
            logger.warning(
                "flow node %s: database error for a batch of %s; one by one", group[0][2].node["id"], len(group)
            )
            self.alone.extend(execution for execution, _, _ in group)
            return []
        except Exception as exc:  # a bug: the group fails visibly, not forever again
            logger.exception("flow node %s failed for a batch of %s executions", group[0][2].node["id"], len(group))
            outcomes = [Outcome.fail(f"internal error: {type(exc).__name__}") for _ in group]
        finally:
            restore()
        now = timezone.now()
        going_on = []
        for (execution, graph, context), outcome in zip(group, outcomes, strict=True):
            move = move_for(execution, graph, context, outcome, now)
            self._step(execution, context, outcome, now)
            for name, value in move.changes.items():
                setattr(execution, name, value)
            self.touched[execution.pk] = execution
            self.moves.append(move)
            if move.result == "next":
                going_on.append(execution)
            else:
                self.results[move.result] += 1
        return going_on

    def _step(self, execution: Execution, context: StepContext, outcome: Outcome, now: Any) -> None:
        step = step_of(execution.pk, context, outcome, now)
        if not context.resumed:
            self.new_steps.append(step)
        elif outcome.kind == "wait":
            return  # waits again (a window): its step waits on
        elif step.detail:
            self.finished_with_detail.append(step)  # a reply's branch: rare, written one by one
        else:
            self.finished[step.status].append(execution.pk)

    def write(self) -> None:
        now = timezone.now()
        rows = [_row(execution, now) for execution in self.touched.values()]
        values_update(Execution, COLUMNS, rows, assignments=ASSIGNMENTS)
        for status, ids in self.finished.items():  # before the inserts: an execution waits in one step at a time
            Step.objects.filter(execution_id__in=ids, status=StepStatus.WAITING).update(status=status, finished_at=now)
        for step in self.finished_with_detail:
            Step.objects.filter(execution_id=step.execution_id, node_id=step.node_id, visit=step.visit).update(
                status=step.status, finished_at=step.finished_at, detail=step.detail
            )
        values_insert(Step, STEP_FIELDS, [[getattr(step, name) for name in STEP_FIELDS] for step in self.new_steps])


Item = tuple[Execution, Graph, StepContext]
STEP_FIELDS = ("execution_id", "node_id", "type", "visit", "status", "started_at", "finished_at", "detail")
COLUMNS = (
    ("k", Execution._meta.pk),
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
    ("now", Execution._meta.get_field("updated_at")),
)
ASSIGNMENTS = (
    "current_node_id = v.node, status = v.status, due_at = v.due, waiting_for = v.waiting, visits = v.visits, "
    "state = v.state, error = v.error, completed_at = v.done, lease_holder = v.holder, lease_until = v.lease, "
    "updated_at = v.now"
)


def _row(execution: Execution, now: Any) -> tuple[Any, ...]:
    return (
        execution.pk,
        execution.current_node_id,
        execution.status,
        execution.due_at,
        execution.waiting_for,
        execution.visits,
        execution.state,
        execution.error,
        execution.completed_at,
        execution.lease_holder,
        execution.lease_until,
        now,
    )
