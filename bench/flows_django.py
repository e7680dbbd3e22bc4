"""The flow benchmark's work inside Django (run as a subprocess with the bench's environment): build its world and
backlog set-based, make an owner for the API, and profile the resumer in this process.

    python -m bench.flows_django world|backlog|owner|flow|profile < spec.json    (prints one JSON line)

`world`: `{"contacts"}`: a merchant, one account, that many contacts (COPY), and two `manual` flows made and
activated through the services: "bulk" (`wait` 60 s -> `add_tag` ["bench"] -> `end`) and "single" (`wait` 60 s ->
`end`). Answers their ids.

`backlog`: `{"flows", "executions", "singles", "spacing", "margin", "kicks"?}`: T0 = now + `margin` seconds;
`executions` executions of "bulk", all due at T0, and `singles` of "single", due at T0 + `spacing`, T0 + 2
`spacing`, ..., inserted with COPY in one transaction as the engine leaves an execution that entered its wait 60 s
before it is due (engine.py: `move_for` of a `wait` outcome, and its waiting Step). Then ANALYZE, and the resumer
kicked (`queue.resumer_kick_now`, `kicks` times: once, as the engine does). Answers T0 and when the rows were
committed (epoch seconds).

`owner`: `{"name"}`: a merchant and its owner; answers the merchant's id and an access token. `flow`:
`{"merchantId", "definition"}`: a flow made and activated through the services (when the API has no flow routes).

`profile`: `{"flows", "executions", "top"}`: a backlog of `executions` due now at a fresh `wait` -> `add_tag`
["profiled"] -> `end` flow of the same merchant, then `automation.resumer.resumer_step()` in this process until
nothing is due: CPU and wall time, statements by kind; then the same over a second backlog under cProfile (CPU
time), its top functions by cumulative and by own time.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import django

django.setup()

from django.db import connection, models, transaction  # noqa: E402
from django.db.models.fields import AutoFieldMixin  # noqa: E402
from django.utils import timezone  # noqa: E402

from automation import queue  # noqa: E402
from automation.flows import flow_activate, flow_create  # noqa: E402
from automation.models import Execution, Flow, FlowVersion, Step, StepStatus, WaitKind  # noqa: E402
from automation.resumer import resumer_step  # noqa: E402
from automation.validation import flow_definition_clean  # noqa: E402
from bench.common import statement_kind  # noqa: E402
from contacts.models import Contact, ContactSource  # noqa: E402
from mktx.accounts.models import Account  # noqa: E402
from mktx.iam.models import Merchant, Role, User  # noqa: E402
from mktx.iam.tokens import tokens_for_user  # noqa: E402

WAIT_SECONDS = 60


def copy_objects(model: type[models.Model], objects: Iterable[models.Model]) -> int:
    """INSERT `objects` (unsaved instances of `model`) with one COPY, each column as the ORM would write it (its
    defaults, JSON; an auto_now or auto_now_add column the moment of the copy); an auto-increment key is left to its
    sequence."""
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    now = timezone.now()
    stamped = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    count = 0
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for obj in objects:
            for field in stamped:
                setattr(obj, field.attname, now)
            copy.write_row([f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields])
            count += 1
    return count


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "config": config}


def flow_made_active(merchant_id: Any, data: dict[str, Any]) -> Flow:
    """A flow made from a definition as the API takes it, validated and activated (version 1) by the services."""
    definition = flow_definition_clean(merchant_id=merchant_id, data=data)
    return flow_activate(flow=flow_create(merchant_id=merchant_id, definition=definition))


def _active_flow(merchant_id: Any, name: str, nodes: list[dict[str, Any]]) -> Flow:
    """A `manual` flow of `nodes` in a chain, active at version 1."""
    connections = [{"fromNodeId": a["id"], "toNodeId": b["id"]} for a, b in itertools.pairwise(nodes)]
    data = {"name": name, "trigger": {"type": "manual", "config": {}}, "nodes": nodes, "connections": connections}
    return flow_made_active(merchant_id, data)


def world(spec: dict[str, Any]) -> dict[str, Any]:
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        merchant = Merchant.objects.create(name="Bench flows")
        account = Account.objects.create(merchant=merchant, twitter_user_id="4100000001", username="bench_shop")
        copy_objects(
            Contact,
            (
                Contact(
                    merchant_id=merchant.pk,
                    account_id=account.pk,
                    twitter_user_id=str(5_000_000_000 + i),
                    username=f"fan_{i}",
                    display_name=f"Fan {i}",
                    source=ContactSource.NEW_FOLLOWER,
                    following=True,
                    first_interaction_at=now,
                    last_interaction_at=now,
                )
                for i in range(int(spec["contacts"]))
            ),
        )
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact")
    bulk = _active_flow(
        merchant.pk,
        "Bench bulk",
        [_node("w", "wait", duration=WAIT_SECONDS), _node("t", "add_tag", tags=["bench"]), _node("e", "end")],
    )
    single = _active_flow(merchant.pk, "Bench single", [_node("w", "wait", duration=WAIT_SECONDS), _node("e", "end")])
    return {
        "merchant": str(merchant.pk),
        "account": str(account.pk),
        "bulk": str(bulk.pk),
        "single": str(single.pk),
        "contactSeconds": seconds,
    }


def _waiting(version: FlowVersion, contact_id: Any, due: datetime) -> tuple[Execution, Step]:
    """An execution of `version` as the engine leaves it once it entered its first node, a wait ending at `due`
    (started, and its wait begun, WAIT_SECONDS before), with the waiting Step of that visit."""
    entered = due - timedelta(seconds=WAIT_SECONDS)
    execution = Execution(
        merchant_id=version.flow.merchant_id,
        flow_id=version.flow_id,
        version_id=version.pk,
        contact_id=contact_id,
        current_node_id="w",
        due_at=due,
        waiting_for=WaitKind.TIME,
        visits={"w": 1},
        state={},
        started_at=entered,
    )
    step = Step(
        execution_id=execution.pk,
        node_id="w",
        type="wait",
        visit=1,
        status=StepStatus.WAITING,
        started_at=entered,
        finished_at=None,
        detail={"until": _iso(due)},
    )
    return execution, step


def _insert_waiting(version: FlowVersion, contact_ids: list[Any], dues: list[datetime]) -> None:
    pairs = [_waiting(version, c, d) for c, d in zip(contact_ids, dues, strict=True)]
    copy_objects(Execution, (e for e, _ in pairs))
    copy_objects(Step, (s for _, s in pairs))


def _version(flow_id: Any) -> FlowVersion:
    return FlowVersion.objects.select_related("flow").get(flow_id=flow_id, number=1)


def backlog(spec: dict[str, Any]) -> dict[str, Any]:
    bulk, single = _version(spec["flows"]["bulk"]), _version(spec["flows"]["single"])
    executions, singles, spacing = int(spec["executions"]), int(spec["singles"]), float(spec["spacing"])
    contact_ids = list(
        Contact.objects.filter(merchant_id=bulk.flow.merchant_id)
        .order_by("twitter_user_id")
        .values_list("pk", flat=True)
    )
    t0 = timezone.now() + timedelta(seconds=float(spec["margin"]))
    with transaction.atomic():
        _insert_waiting(bulk, contact_ids[:executions], [t0] * executions)
        _insert_waiting(
            single, contact_ids[:singles], [t0 + timedelta(seconds=spacing * k) for k in range(1, singles + 1)]
        )
    committed = time.time()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE automation_execution")
        cursor.execute("ANALYZE automation_step")
    for _ in range(int(spec.get("kicks", 1))):
        queue.resumer_kick_now()
    return {"t0": t0.timestamp(), "committed": committed, "kicked": time.time()}


def owner(spec: dict[str, Any]) -> dict[str, Any]:
    merchant = Merchant.objects.create(name=spec["name"])
    user = User.objects.create_user(
        f"owner@{spec['name'].lower().replace(' ', '-')}.bench", "bench-password-1", merchant=merchant, role=Role.OWNER
    )
    return {"merchant": str(merchant.pk), "token": str(tokens_for_user(user)["accessToken"])}


def _due_backlog(merchant_id: Any, executions: int, tag: str) -> Flow:
    """A fresh `wait` -> `add_tag` [tag] -> `end` flow with a backlog of `executions`, due a second ago."""
    nodes = [_node("w", "wait", duration=WAIT_SECONDS), _node("t", "add_tag", tags=[tag]), _node("e", "end")]
    made = _active_flow(merchant_id, f"Bench {tag}", nodes)
    contact_ids = list(Contact.objects.filter(merchant_id=merchant_id).values_list("pk", flat=True)[:executions])
    due = timezone.now() - timedelta(seconds=1)
    with transaction.atomic():
        _insert_waiting(_version(made.pk), contact_ids, [due] * len(contact_ids))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE automation_execution")
        cursor.execute("ANALYZE automation_step")
    return made


def _drain(profiler: cProfile.Profile | None) -> dict[str, Any]:
    """resumer_step until nothing is due now: passes, CPU and wall seconds, the statements by kind."""
    kinds: Counter[str] = Counter()
    connection.ensure_connection()
    connection.force_debug_cursor = True
    connection.queries_log.clear()
    cpu = wall = 0.0
    passes = 0
    try:
        while passes < 1000:
            cpu_at, wall_at = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            wake = resumer_step()
            if profiler is not None:
                profiler.disable()
            cpu += time.process_time() - cpu_at
            wall += time.perf_counter() - wall_at
            passes += 1
            for query in connection.queries_log:
                kinds[statement_kind(query["sql"])] += 1
            connection.queries_log.clear()
            if wake is None or wake > timezone.now():
                break
    finally:
        connection.force_debug_cursor = False
    return {"passes": passes, "cpu": cpu, "wall": wall, "queries": sum(kinds.values()), "kinds": kinds}


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    """resumer_step in this process over a fresh backlog due now: once as it runs (CPU, wall, statements), then
    over another backlog under cProfile (CPU time)."""
    merchant_id = Flow.objects.get(pk=spec["flows"]["bulk"]).merchant_id
    executions = int(spec["executions"])
    plain_flow = _due_backlog(merchant_id, executions, "profiled")
    plain = _drain(None)
    profiled_flow = _due_backlog(merchant_id, executions, "profiled2")
    profiler = cProfile.Profile(time.process_time)
    profiled = _drain(profiler)
    done = Execution.objects.filter(flow__in=[plain_flow, profiled_flow], status="completed").count()
    top = int(spec.get("top", 40))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    out.write("\n--- by own time ---\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top // 2)
    return {
        "executions": executions,
        "completed": done,
        "passes": plain["passes"],
        "cpu": plain["cpu"],
        "wall": plain["wall"],
        "queries": plain["queries"],
        "kinds": dict(plain["kinds"].most_common(20)),
        "profiled_cpu": profiled["cpu"],
        "profile": out.getvalue(),
    }


COMMANDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "world": world,
    "backlog": backlog,
    "owner": owner,
    "profile": profile,
}


def main() -> None:
    result = COMMANDS[sys.argv[1]](json.loads(sys.stdin.read() or "{}"))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
