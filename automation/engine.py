"""The state machine of an execution, whole in this module: start, advance node by node, wait, resume, finish,
cancel.

An execution is `running` from its start until it ends `completed`, `failed` or `cancelled`. While running it is
at `current_node_id`, and either due (`due_at` <= now: a worker may advance it) or waiting: on time (`due_at` in
the future) or on the contact's reply (`waiting_for` = reply, `due_at` its timeout). A worker advances it only under
a lease (`lease_holder`, `lease_until`), taken by one conditional UPDATE, so any number of workers share executions
and a killed worker's executions are taken over when its lease ends.

Each node visited is one Step. A step's outcome (automation/runners.py) and the execution's move are recorded in
one transaction whose conditional UPDATE names the node and the lease it found: an execution cancelled, or taken
over, meanwhile is left as it is (and the step's writes roll back). The node runners that call X (`send_message`,
`ai_reply`) run before that transaction, never inside it: their DM is keyed per (execution, node, visit, attempt),
so a step run again after a crash answers the DM already stored instead of sending a second one.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from automation import queue
from automation.graph import entry_node, next_nodes
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, FlowVersion, Step, StepStatus, WaitKind
from automation.runners import EXTERNAL, RUNNERS, Outcome, StepContext
from contacts.models import Contact, Message

logger = logging.getLogger("mktx.automation")

MAX_DEPTH = 3  # a chain of flows triggering flows deeper than this stops (`trigger_depth`)
STEPS_PER_ADVANCE = 200  # nodes one advance runs before handing the execution back (due now) to the resumer
LEASE = timedelta(seconds=60)
LOOKAHEAD = timedelta(seconds=70)  # a wait ending sooner than this (before the next minute tick) kicks the resumer

# the depth of the execution whose step runs now: flows its actions trigger start one deeper
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("flow_depth", default=0)


def trigger_depth_set(depth: int) -> Callable[[], None]:
    """While a step of an execution at `depth` runs, the flows it triggers start one deeper; call the answer to
    put the depth back."""
    token = _depth.set(depth)
    return lambda: _depth.reset(token)


def trigger_depth() -> int:
    """The depth a flow started now gets: 1 from an outside event, one more than the step that caused it."""
    return _depth.get() + 1


@dataclass
class Graph:
    """A version's definition, ready to walk."""

    nodes: dict[str, dict[str, Any]]
    edges: dict[str, dict[str | None, str]]
    entry: str
    account_ids: list[str] | None
    trigger_config: dict[str, Any]


_graphs: dict[tuple[Any, int], Graph] = {}


def graph_of(version: FlowVersion) -> Graph:
    """The walkable graph of a version (versions never change: cached per process, by flow and number)."""
    key = (version.flow_id, version.number)
    graph = _graphs.get(key)
    if graph is None:
        graph = Graph(
            nodes={node["id"]: node for node in version.nodes},
            edges=next_nodes(version.nodes, version.connections),
            entry=entry_node(version.nodes, version.connections),
            account_ids=version.account_ids,
            trigger_config=version.trigger_config or {},
        )
        if len(_graphs) > 10_000:
            _graphs.clear()
        _graphs[key] = graph
    return graph


# --- start ---------------------------------------------------------------------------------------------------------


def execution_start(*, version: FlowVersion, contact: Contact, now: datetime | None = None) -> Execution | str:
    """Start `version`'s flow for `contact` (inside the caller's transaction; advanced after the commit). Answers
    the new execution, or why none started: `already_enrolled` (re-entry `never` and the contact went through the
    flow before), `running` (an execution of the flow runs for the contact: a unique constraint, not a check)."""
    now = now or timezone.now()
    graph = graph_of(version)
    reentry = graph.trigger_config.get("reentry", "never")
    earlier = Execution.objects.filter(flow_id=version.flow_id, contact_id=contact.pk)
    if reentry == "never" and earlier.exists():
        return "already_enrolled"
    depth = trigger_depth()
    fields: dict[str, Any] = {
        "merchant_id": contact.merchant_id,
        "flow_id": version.flow_id,
        "version": version,
        "contact": contact,
        "current_node_id": graph.entry,
        "started_at": now,
        "depth": depth,
    }
    if depth > MAX_DEPTH:  # a loop of flows triggering flows: stopped, and visible
        fields.update(status=ExecutionStatus.FAILED, error="trigger_depth", completed_at=now, current_node_id="")
    else:
        fields.update(due_at=now)
    try:
        with transaction.atomic():
            execution = Execution.objects.create(**fields)
    except IntegrityError:
        return "running"
    if execution.status == ExecutionStatus.RUNNING:
        queue.advance_later(execution.pk)
    else:
        logger.warning("flow %s not started for %s: trigger depth %s", version.flow_id, contact.pk, depth)
    return execution


# --- advance -------------------------------------------------------------------------------------------------------


def execution_lease(*, execution_id: Any, now: datetime | None = None) -> str | None:
    """Take one due execution's lease (the queued advance of a new or resumed execution); its holder, or None."""
    now = now or timezone.now()
    holder = uuid.uuid4().hex
    taken = Execution.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        pk=execution_id,
        status=ExecutionStatus.RUNNING,
        due_at__lte=now,
    ).update(lease_until=now + LEASE, lease_holder=holder)
    return holder if taken else None


def execution_advance(*, execution_id: Any, holder: str) -> str:
    """Advance a leased execution node by node until it waits or ends (or STEPS_PER_ADVANCE nodes ran). Answers
    how it stopped, for the task log."""
    execution = (
        Execution.objects.select_related("version", "contact", "contact__account")
        .filter(pk=execution_id, status=ExecutionStatus.RUNNING, lease_holder=holder)
        .first()
    )
    if execution is None:
        return "not leased"
    graph = graph_of(execution.version)
    restore = trigger_depth_set(execution.depth)
    try:
        for _ in range(STEPS_PER_ADVANCE):
            outcome = _step(execution, graph, holder)
            if outcome != "next":
                return outcome
    finally:
        restore()
    _release(execution, holder, due_at=timezone.now())
    return "handed back"


def context_for(execution: Execution, graph: Graph, node: dict[str, Any]) -> StepContext:
    """The context of the execution's step at `node` (its current node)."""
    resumed = execution.waiting_for != WaitKind.NONE
    return StepContext(
        execution=execution,
        node=node,
        config=node.get("config") or {},
        contact=execution.contact,
        visit=execution.visits.get(node["id"], 0) + (0 if resumed else 1),
        resumed=resumed,
        now=timezone.now(),
        graph_accounts=graph.account_ids,
    )


def _step(execution: Execution, graph: Graph, holder: str) -> str:
    node_id = execution.current_node_id
    node = graph.nodes.get(node_id)
    if node is None:  # cannot happen for a validated version; never loop on it
        _finish(execution, holder, ExecutionStatus.FAILED, f"unknown node {node_id!r}")
        return "failed"
    if not _renew(execution, holder):
        return "lost"
    context = context_for(execution, graph, node)
    runner = RUNNERS[node["type"]]
    if node["type"] in EXTERNAL:
        outcome = run_safely(runner, context)
        with transaction.atomic():
            moved = _record(execution, graph, holder, context, outcome)
    else:
        try:
            with transaction.atomic():
                outcome = run_safely(runner, context)
                moved = _record(execution, graph, holder, context, outcome)
                if moved is None:
                    raise _Lost
        except _Lost:
            moved = None
    if moved is None:  # let it go at once: a reply queued for it must not wait for this lease to end
        Execution.objects.filter(pk=execution.pk, lease_holder=holder).update(lease_until=None, lease_holder="")
        return "lost"
    return moved


def _renew(execution: Execution, holder: str) -> bool:
    """Before each step, and so right before any call to X: the lease renewed, if the execution is still this
    holder's, at this node, in this state, and its flow still active (a worker whose lease ran out while X was slow
    must not send the next DM, nor one after a deactivation). An execution whose flow stopped meanwhile (a trigger
    that started it as the flow was deactivated) is cancelled here."""
    scope = Execution.objects.filter(
        pk=execution.pk,
        status=ExecutionStatus.RUNNING,
        lease_holder=holder,
        current_node_id=execution.current_node_id,
        waiting_for=execution.waiting_for,
    )
    # the flow's state as a subquery, not a join: a join makes the UPDATE's own conditions a subquery too, which
    # PostgreSQL does not check again once a lock it waited for is released (a cancel committed meanwhile)
    active = Flow.objects.filter(pk=execution.flow_id, status=FlowStatus.ACTIVE).values("pk")
    if scope.filter(flow_id__in=active).update(lease_until=timezone.now() + LEASE):
        return True
    if scope.exists():  # still this holder's: its flow is no longer active
        executions_cancel(execution_ids=[execution.pk], reason="flow_inactive")
    return False


class _Lost(Exception):
    """The execution was cancelled or taken over while the step ran: its writes roll back."""


def run_safely(runner: Any, context: StepContext) -> Outcome:
    try:
        return runner(context)
    except DatabaseError:  # passing (a deadlock, a lost connection): the step is taken again, not failed
        raise
    except Exception as exc:  # a bug in a node must fail the execution visibly, not retry it forever
        logger.exception("flow node %s of execution %s failed", context.node["id"], context.execution.pk)
        return Outcome.fail(f"internal error: {type(exc).__name__}")


@dataclass(frozen=True)
class Move:
    """Where a step's outcome takes the execution: the changes of its row, and how the advance goes on."""

    changes: dict[str, Any]
    result: str  # "next", "waiting", "failed" or "completed"


def move_for(execution: Execution, graph: Graph, context: StepContext, outcome: Outcome, now: datetime) -> Move:
    node_id = context.node["id"]
    # a node's state (a send's attempt, the reply that resumed a wait) lasts while the execution is at the node
    state = dict(outcome.state if outcome.state is not None else execution.state) if outcome.kind == "wait" else {}
    changes: dict[str, Any] = {"visits": {**execution.visits, node_id: context.visit}, "state": state}
    ended = {"due_at": None, "waiting_for": WaitKind.NONE, "lease_until": None, "lease_holder": "", "completed_at": now}
    if outcome.kind == "wait":
        changes.update(due_at=outcome.until, waiting_for=outcome.waiting_for, lease_until=None, lease_holder="")
        return Move(changes, "waiting")
    if outcome.kind == "fail":
        changes.update(ended, status=ExecutionStatus.FAILED, error=outcome.reason[:500])
        return Move(changes, "failed")
    following = graph.edges.get(node_id, {}).get(outcome.branch)
    if following is None:
        changes.update(ended, status=ExecutionStatus.COMPLETED, current_node_id="")
        return Move(changes, "completed")
    changes.update(current_node_id=following, due_at=now, waiting_for=WaitKind.NONE)
    return Move(changes, "next")


# set while a resumer loop runs: it sees the waits it makes itself, no kick needed
resumer_awake: contextvars.ContextVar[bool] = contextvars.ContextVar("resumer_awake", default=False)


def wake_if_soon(moves: list[Move], now: datetime) -> None:
    """A wait that ends before the next minute tick kicks the resumer (once for all of them)."""
    if resumer_awake.get():
        return
    if any(m.result == "waiting" and m.changes["due_at"] - now <= LOOKAHEAD for m in moves):
        queue.resumer_kick()


def _record(execution: Execution, graph: Graph, holder: str, context: StepContext, outcome: Outcome) -> str | None:
    """The step's outcome and the execution's move, in the caller's transaction. None: the execution is no longer
    this holder's at this node (cancelled, taken over); nothing is written."""
    now = timezone.now()
    move = move_for(execution, graph, context, outcome, now)
    # the state the step read: a reply that landed meanwhile (waiting_for moved on) wins over a timeout
    scope = Execution.objects.filter(
        pk=execution.pk,
        status=ExecutionStatus.RUNNING,
        lease_holder=holder,
        current_node_id=context.node["id"],
        waiting_for=execution.waiting_for,
    )
    if not scope.update(**move.changes):
        return None
    step = step_of(execution.pk, context, outcome, now)
    if context.resumed:  # the visit's step was stored when it began to wait
        Step.objects.filter(execution_id=execution.pk, node_id=step.node_id, visit=step.visit).update(
            status=step.status, finished_at=step.finished_at, **({"detail": step.detail} if step.detail else {})
        )
    else:
        step.save(force_insert=True)
    for field, value in move.changes.items():
        setattr(execution, field, value)
    wake_if_soon([move], now)
    return move.result


STEP_STATUS = {"wait": StepStatus.WAITING, "fail": StepStatus.FAILED, "next": StepStatus.COMPLETED}


def step_of(execution_id: Any, context: StepContext, outcome: Outcome, now: datetime) -> Step:
    """The Step row of a visit as its outcome leaves it (unsaved)."""
    detail = {**outcome.detail, **({"branch": outcome.branch} if outcome.branch else {})}
    if outcome.kind == "fail":
        detail.setdefault("reason", outcome.reason)
    return Step(
        execution_id=execution_id,
        node_id=context.node["id"],
        type=context.node["type"],
        visit=context.visit,
        status=StepStatus.SKIPPED if outcome.skipped else STEP_STATUS[outcome.kind],
        started_at=context.now,
        finished_at=None if outcome.kind == "wait" else now,
        detail=detail,
    )


def _release(execution: Execution, holder: str, *, due_at: datetime) -> None:
    Execution.objects.filter(pk=execution.pk, lease_holder=holder).update(
        lease_until=None, lease_holder="", due_at=due_at
    )


def _finish(execution: Execution, holder: str, status: str, error: str) -> None:
    now = timezone.now()
    Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.RUNNING, lease_holder=holder).update(
        status=status, error=error[:500], completed_at=now, due_at=None, waiting_for=WaitKind.NONE, lease_holder=""
    )


# --- replies and stops ---------------------------------------------------------------------------------------------


def execution_reply(*, execution: Execution, message: Message) -> bool:
    """A waiting_for_reply execution takes the contact's DM: due now, with the reply in its state (the runner picks
    the `replied` branch). False when it was no longer waiting (a timeout resumed it first)."""
    taken = Execution.objects.filter(
        pk=execution.pk,
        status=ExecutionStatus.RUNNING,
        waiting_for=WaitKind.REPLY,
        current_node_id=execution.current_node_id,
    ).update(
        due_at=timezone.now(),
        waiting_for=WaitKind.TIME,
        state={**execution.state, "reply": {"messageId": str(message.pk), "text": message.content[:4000]}},
    )
    if taken:
        queue.advance_later(execution.pk)
    return bool(taken)


def executions_cancel(
    *, flow_id: Any = None, contact_id: Any = None, execution_ids: list[Any] | None = None, reason: str
) -> int:
    """Cancel the running executions of a flow, of a contact, these ones, or where those meet; their waiting step
    too. The count."""
    if flow_id is None and contact_id is None and execution_ids is None:
        raise ValueError("executions_cancel needs a flow, a contact or executions")
    scope = Q(status=ExecutionStatus.RUNNING)
    if execution_ids is not None:
        scope &= Q(pk__in=execution_ids)
    if flow_id is not None:
        scope &= Q(flow_id=flow_id)
    if contact_id is not None:
        scope &= Q(contact_id=contact_id)
    now = timezone.now()
    with transaction.atomic():
        # rows locked in key order, as the resumer's batches lock them: the two never deadlock
        ids = list(Execution.objects.select_for_update().filter(scope).order_by("pk").values_list("pk", flat=True))
        cancelled = Execution.objects.filter(scope, pk__in=ids).update(
            status=ExecutionStatus.CANCELLED,
            error=reason,
            completed_at=now,
            due_at=None,
            waiting_for=WaitKind.NONE,
            lease_holder="",
            lease_until=None,
        )
        Step.objects.filter(execution_id__in=ids, status=StepStatus.WAITING).update(
            status=StepStatus.CANCELLED, finished_at=now, detail={"reason": reason}
        )
    return cancelled
