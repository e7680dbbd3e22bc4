"""Automation flows on PostgreSQL (Redis as the broker, a real django-q2 cluster): the resumer's throughput on a
backlog all due at once, and trigger-to-first-DM latency through the real webhook path (issue 13, Performance).

Phase 1, throughput: a merchant, one account and `--executions` contacts; a `manual` flow `wait` 60 s ->
`add_tag` ["bench"] -> `end` (active, version 1), and one execution per contact inserted set-based as the engine
leaves an execution waiting at the wait (its waiting Step included), all due at one moment T0 a few seconds ahead.
Besides them, `--singles` executions of a `wait` -> `end` flow due at T0 + 2 s, T0 + 4 s, ...: a single wait's
lateness while the batch runs (its wait step's finished_at - due). ONE cluster (`--workers`, MKTX_FLOW_LANES =
`--lanes`, MKTX_FLOW_BUDGET_SECONDS as configured) is started first; the backlog is committed, the resumer kicked.
Measured: T0 until the last execution completed (its completed_at), the cluster's memory (RSS of each of its
processes from /proc every 0.5 s: the peak in the first 10 s from T0 against the peak overall), CPU per execution
(the cluster's processes and the database's backends). Checked: every contact tagged "bench" exactly once, three
steps per execution, all completed, no execution failed.

Phase 2, trigger-to-first-DM: the X sandbox (limits raised), gunicorn serving the API with MKTX_PUBLIC_URL pointing
at it, an owner's account connected through POST /accounts (the sandbox's webhook registered by a real CRC check),
a `new_follower` flow `send_message` "Welcome {{firstName}}!" made and activated through the API, and the cluster;
then `--followers` sandbox users follow the account one by one at `--rate` per second (POST /_sandbox/follow: the
sandbox delivers the follow event to the webhook before it answers). Latency: from the follow call until the DM's
createdAt at the sandbox (one clock: the same machine).

    .venv/bin/python bench/flows.py [--executions 100000] [--followers 200] [--skip-phase2] [--workers 4]
                                    [--lanes 2] [--profile N]

Each figure is printed with its target and its ratio, `ratio >= 1 means the target is met`: target / measured for
times, measured / target for the throughput. `--profile N` (or, when phase 1 misses a target, N = 2000): with the
cluster stopped, cProfile of `automation.resumer.resumer_step()` in one process over a fresh backlog of N. The last
line is the worst ratio to its target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import requests

from bench.common import (
    PG_ADMIN_URL,
    ROOT,
    BackendsCpu,
    Cluster,
    Gunicorn,
    XSandbox,
    _parents,
    bench_env,
    fresh_database,
    manage,
    percentile,
    redis_flush,
)

DATABASE = "mktx_bench_flows"
REDIS_URL = "redis://127.0.0.1:6379/14"
UNLIMITED = 100_000_000
API = "/api/v1/mkt-x"
PAGE = os.sysconf("SC_PAGE_SIZE")

# the targets of issue 13
TARGET_EXECUTIONS, TARGET_SECONDS = 100_000, 60.0
TARGET_LATENESS_P95 = 5.0
TARGET_DM_P50, TARGET_DM_P95 = 1.0, 3.0
FLAT = 1.25  # memory: the overall peak at most this many times the first 10 s's


def flows_django(env: dict[str, str], command: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One of bench/flows_django.py's commands in a subprocess with `env`; its JSON answer."""
    done = subprocess.run([sys.executable, "-m", "bench.flows_django", command], input=json.dumps(spec), cwd=ROOT,
                          env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"flows_django {command} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def tree(root: int) -> list[int]:
    """A process and all its descendants."""
    parents = _parents()
    found, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid and child not in found]
        found += children
        frontier += children
    return found


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


class Memory:
    """The cluster's memory over time: per sample, its processes' RSS summed and the largest one's."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.samples: list[tuple[float, int, int]] = []  # (time, sum, largest)

    def sample(self) -> None:
        sizes = [rss(pid) for pid in tree(self.root)]
        self.samples.append((time.time(), sum(sizes), max(sizes, default=0)))

    def peaks(self, start: float, first: float = 10.0) -> dict[str, float]:
        """Peaks in MiB: of the sum and of the largest process, in [start, start + first] and from start on."""
        mib = 1 << 20
        early = [s for s in self.samples if start <= s[0] <= start + first] or self.samples[:1]
        during = [s for s in self.samples if s[0] >= start] or self.samples[-1:]
        return {
            "early_sum": max(s[1] for s in early) / mib,
            "early_largest": max(s[2] for s in early) / mib,
            "sum": max(s[1] for s in during) / mib,
            "largest": max(s[2] for s in during) / mib,
        }


def one(conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None) -> Any:
    row = conn.execute(sql, params or []).fetchone()
    return row[0] if row and len(row) == 1 else row


def by_status(conn: psycopg.Connection[Any], flow_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM automation_execution WHERE flow_id = %s GROUP BY status", [flow_id]
    ).fetchall()
    return {status: int(n) for status, n in rows}


# --- phase 1 ---------------------------------------------------------------------------------------------------------


def phase1(env: dict[str, str], args: argparse.Namespace, url: str) -> dict[str, Any]:
    n = args.executions
    print(f"phase 1: {n:,} contacts and the flows ...", flush=True)
    made = flows_django(env, "world", {"contacts": max(n, args.singles)})
    flows = {"bulk": made["bulk"], "single": made["single"]}
    margin = args.margin or round(3 + 3 * made["contactSeconds"], 1)
    cluster = Cluster(env)
    memory = Memory(cluster.process.pid)
    try:
        time.sleep(3)
        memory.sample()
        spec = {"flows": flows, "executions": n, "singles": args.singles, "spacing": args.spacing}
        at = flows_django(env, "backlog", {**spec, "margin": margin, "kicks": args.kicks})
        t0 = at["t0"]
        print(f"  {n:,} executions due at T0 (+{margin} s), {args.singles} single waits due every {args.spacing} s "
              f"after it; committed {at['committed'] - t0:+.1f} s from T0, the resumer kicked "
              f"{at['kicked'] - t0:+.1f} s from T0", flush=True)  # fmt: skip
        if at["committed"] > t0:
            print("  WARNING: the backlog was committed after T0: the time below includes the lag", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            backends = BackendsCpu(conn, DATABASE)
            while time.time() < t0:
                memory.sample()
                time.sleep(0.1)
            cpu_at = cluster.cpu()
            deadline, shown = t0 + max(300.0, n / 100), t0
            while time.time() < deadline:
                memory.sample()
                backends.sample()
                bulk, single = by_status(conn, flows["bulk"]), by_status(conn, flows["single"])
                if not bulk.get("running") and not single.get("running"):
                    break
                if time.time() - shown >= 10:
                    shown = time.time()
                    print(f"  {bulk.get('completed', 0):,}/{n:,} completed after {shown - t0:.0f} s", flush=True)
                time.sleep(0.5)
            cluster_cpu, pg_cpu = cluster.cpu() - cpu_at, backends.total()
            memory.sample()
            figures = phase1_figures(conn, flows, made["merchant"], t0, n)
    finally:
        cluster.stop()
    figures.update(memory=memory.peaks(t0), cluster_cpu=cluster_cpu, pg_cpu=pg_cpu, flows=flows, margin=margin)
    return figures


def phase1_figures(conn: psycopg.Connection[Any], flows: dict[str, str], merchant: str, t0: float, n: int) -> dict:
    bulk, single = by_status(conn, flows["bulk"]), by_status(conn, flows["single"])
    last = one(conn, "SELECT max(completed_at) FROM automation_execution WHERE flow_id = %s", [flows["bulk"]])
    first = one(conn, "SELECT min(finished_at) FROM automation_step s JOIN automation_execution e ON "
                      "e.id = s.execution_id WHERE e.flow_id = %s AND s.node_id = 'w'", [flows["bulk"]])  # fmt: skip
    lateness = [
        float(v)
        for (v,) in conn.execute(
            "SELECT extract(epoch FROM s.finished_at - s.started_at) - 60 FROM automation_step s "
            "JOIN automation_execution e ON e.id = s.execution_id WHERE e.flow_id = %s AND s.node_id = 'w' "
            "AND s.finished_at IS NOT NULL",
            [flows["single"]],
        ).fetchall()
    ]
    tagged, tagged_contacts = one(
        conn,
        "SELECT count(*), count(DISTINCT ct.contact_id) FROM contacts_contacttag ct JOIN contacts_tag t "
        "ON t.id = ct.tag_id WHERE t.merchant_id = %s AND t.name = 'bench'",
        [merchant],
    )
    names = one(conn, """SELECT count(*) FROM contacts_contact WHERE merchant_id = %s AND tag_names @> '["bench"]'""",
                [merchant])  # fmt: skip
    steps, steps_done = one(
        conn,
        "SELECT count(*), count(*) FILTER (WHERE s.status = 'completed') FROM automation_step s "
        "JOIN automation_execution e ON e.id = s.execution_id WHERE e.flow_id = %s",
        [flows["bulk"]],
    )
    failed = one(conn, "SELECT count(*) FROM automation_execution WHERE status = 'failed'")
    return {
        "bulk": bulk,
        "single": single,
        "seconds": (last.timestamp() - t0) if last else float("inf"),
        "first_resumed": (first.timestamp() - t0) if first else float("inf"),
        "lateness": lateness,
        "tagged": int(tagged),
        "tagged_contacts": int(tagged_contacts),
        "tag_names": int(names),
        "steps": int(steps),
        "steps_done": int(steps_done),
        "failed": int(failed),
        "ok": (
            bulk.get("completed", 0) == n
            and tagged == tagged_contacts == names == n
            and steps == steps_done == 3 * n
            and failed == 0
            and len(lateness) == sum(single.values())
        ),
    }


# --- phase 2 ---------------------------------------------------------------------------------------------------------


def api(server: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(method, server + API + path, json=body, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def welcome_flow(server: str, token: str) -> str:
    """The new_follower flow, made and activated through the API; its id."""
    definition = {
        "name": "Welcome",
        "trigger": {"type": "new_follower", "config": {}},
        "nodes": [{"id": "dm", "type": "send_message", "config": {"content": "Welcome {{firstName}}!"}}],
        "connections": [],
    }
    made = api(server, token, "POST", "/automation/flows", definition)
    if made.status_code != 200:
        raise RuntimeError(f"POST /automation/flows answered {made.status_code}: {made.text[:500]}")
    flow_id = str(made.json()["data"]["id"])
    active = api(server, token, "POST", f"/automation/flows/{flow_id}/activate")
    if active.status_code != 200 or active.json()["data"]["status"] != "active":
        raise RuntimeError(f"activate answered {active.status_code}: {active.text[:500]}")
    return flow_id


STAGES = (
    ("the webhook stored the event", "received"),
    ("a drain processed it", "processed"),
    ("the execution started", "started"),
    ("its advance ran the send step", "stepped"),
    ("the DM reached the sandbox", "at_x"),
)


def stages_of(
    conn: psycopg.Connection[Any],
    flow_id: str,
    account_id: str,
    followed: dict[str, float],
    first: dict[str, dict[str, Any]],
) -> dict[str, list[float]]:
    """Where each follower's latency went: from the follow call, when each stage of the path was reached (the
    stored event, the contact's execution, its send step, the DM at the sandbox), in seconds."""
    rows = conn.execute(
        "SELECT c.twitter_user_id, ev.received_at, ev.processed_at, e.started_at, s.started_at "
        "FROM contacts_contact c JOIN automation_execution e ON e.contact_id = c.id AND e.flow_id = %s "
        "LEFT JOIN automation_step s ON s.execution_id = e.id AND s.node_id = 'dm' "
        "LEFT JOIN webhooks_app_inboundevent ev ON ev.for_user_id = (SELECT twitter_user_id FROM accounts_account "
        "WHERE id = %s) AND ev.payload->'follow_events'->0->'source'->>'id' = c.twitter_user_id "
        "WHERE c.account_id = %s",
        [flow_id, account_id, account_id],
    ).fetchall()
    stages: dict[str, list[float]] = {key: [] for _, key in STAGES}
    for fid, received, processed, started, stepped in rows:
        at = followed.get(fid)
        if at is None:
            continue
        sent = parse_ms(first[fid]["createdAt"]) if fid in first else None
        for (_, key), when in zip(STAGES, (received, processed, started, stepped, sent), strict=True):
            if when is not None:
                stages[key].append((when if isinstance(when, float) else when.timestamp()) - at)
    return stages


def parse_ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def phase2(env: dict[str, str], args: argparse.Namespace, url: str) -> dict[str, Any]:
    print(f"phase 2: {args.followers} follows at {args.rate:g}/s through the webhook ...", flush=True)
    sandbox = XSandbox(env, dm15m=UNLIMITED)
    env = {**env, "X_API_BASE_URL": sandbox.url}
    try:
        with Gunicorn(env, public=True) as server:
            env = {**env, "MKTX_PUBLIC_URL": server.url}
            owner = flows_django(env, "owner", {"name": "Bench welcome"})
            shop, *fans = sandbox.users(["welcome_shop"] + [f"fan_{i}" for i in range(args.followers)])
            tokens = {"oauthToken": shop["oauthToken"], "oauthTokenSecret": shop["oauthTokenSecret"]}
            connected = api(server.url, owner["token"], "POST", "/accounts", tokens)
            if connected.status_code != 200:
                raise RuntimeError(f"POST /accounts answered {connected.status_code}: {connected.text[:500]}")
            account_id = str(connected.json()["data"]["id"])
            flow_id = welcome_flow(server.url, owner["token"])
            cluster = Cluster(env)
            try:
                time.sleep(3)
                followed, calls, delivered = {}, [], 0
                start = time.time()
                for i, fan in enumerate(fans):
                    pause = start + i / args.rate - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    at = time.time()
                    answer = sandbox.post("/_sandbox/follow", {"sourceId": fan["id"], "targetId": shop["id"]})
                    calls.append(time.time() - at)
                    followed[fan["id"]] = at
                    delivered += all(d["status"] == 200 for d in answer["deliveries"]) and bool(answer["deliveries"])
                deadline = time.time() + 30
                while time.time() < deadline:
                    dms = sandbox.dms(shop["id"])
                    if len({dm["recipientId"] for dm in dms}) >= len(fans):
                        break
                    time.sleep(0.25)
            finally:
                cluster.stop()
    finally:
        sandbox.stop()
    names = {fan["id"]: fan["name"] for fan in fans}
    first: dict[str, dict[str, Any]] = {}
    for dm in sorted(dms, key=lambda d: int(d["id"])):
        first.setdefault(dm["recipientId"], dm)
    with psycopg.connect(url) as conn:
        stages = stages_of(conn, flow_id, account_id, followed, first)
    latencies = [parse_ms(first[f]["createdAt"]) - at for f, at in followed.items() if f in first]
    wrong = sum(1 for f, dm in first.items() if dm["text"] != f"Welcome {names.get(f, '?').split()[0]}!")
    return {
        "latencies": latencies,
        "missing": len(followed) - len(latencies),
        "extra": len(dms) - len(first),
        "wrong": wrong,
        "delivered": delivered,
        "calls": calls,
        "seconds": time.time() - start,
        "stages": stages,
    }


# --- the report ------------------------------------------------------------------------------------------------------


def verdict(name: str, measured: float, target: float, unit: str, *, higher: bool = False) -> tuple[str, float]:
    """A figure's line and its ratio (target / measured; measured / target when higher is better)."""
    if higher:
        ratio = measured / target if target else 0.0
    else:
        ratio = target / measured if measured > 0 else float("inf")
    sign = ">=" if higher else "<="
    return f"  {name}: {measured:,.2f} {unit} (target {sign} {target:,.2f} {unit}): ratio {ratio:.2f}", ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--skip-phase2", action="store_true")
    parser.add_argument("--workers", type=int, default=4, help="django-q workers (MKTX_WORKERS)")
    parser.add_argument("--lanes", type=int, default=2, help="MKTX_FLOW_LANES (the project default)")
    parser.add_argument("--singles", type=int, default=20, help="single waits due during the batch")
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between the single waits' due times")
    parser.add_argument("--margin", type=float, default=0.0, help="seconds from the backlog's insert to T0 (0: auto)")
    parser.add_argument("--kicks", type=int, default=1, help="resumer tasks queued at T0 (the engine queues 1)")
    parser.add_argument("--rate", type=float, default=10.0, help="phase 2: follows per second")
    parser.add_argument("--profile", type=int, default=0, help="in-process profile of a backlog of N")
    args = parser.parse_args()

    fresh_database(DATABASE)
    env = bench_env(
        DATABASE,
        REDIS_URL=REDIS_URL,
        MKTX_CACHE_PREFIX="bench-flows",
        MKTX_WORKERS=str(args.workers),
        MKTX_FLOW_LANES=str(args.lanes),
        MKTX_X_DM_DAILY_LIMIT=str(UNLIMITED),
        MKTX_CAMPAIGN_DAILY_LIMIT=str(UNLIMITED),
        X_BEARER_TOKEN="bench-bearer-token",  # the app's calls (webhook registration); the sandbox reads it too
    )
    print(f"migrating {DATABASE} ...", flush=True)
    manage(env, "migrate", "--noinput")
    redis_flush(REDIS_URL)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE
    lines: list[str] = []
    ratios: dict[str, float] = {}
    ok = True
    try:
        one_ = phase1(env, args, url)
        n = args.executions
        rate = n / one_["seconds"]
        target_rate = TARGET_EXECUTIONS / TARGET_SECONDS
        mem = one_["memory"]
        late = one_["lateness"]
        print(f"phase 1: {one_['bulk'].get('completed', 0):,} of {n:,} completed {one_['seconds']:.1f} s after T0 "
              f"({rate:,.0f}/s; the first wait resumed {one_['first_resumed']:+.2f} s from T0), "
              f"{args.workers} workers, {args.lanes} resumer lane(s); statuses {one_['bulk']}")  # fmt: skip
        print(f"  checks: {one_['tagged']:,} 'bench' tag links on {one_['tagged_contacts']:,} contacts "
              f"({one_['tag_names']:,} with it in tag_names), {one_['steps']:,} steps ({one_['steps_done']:,} "
              f"completed), {one_['failed']} failed executions: {'ok' if one_['ok'] else 'WRONG'}")  # fmt: skip
        ms = 1000 / max(n, 1)
        print(f"  CPU per execution: the cluster {one_['cluster_cpu'] * ms:.2f} ms, PostgreSQL's backends "
              f"{one_['pg_cpu'] * ms:.2f} ms")  # fmt: skip
        print(f"  memory (RSS): the largest cluster process {mem['early_largest']:.0f} MiB in the first 10 s, "
              f"{mem['largest']:.0f} MiB at its peak; all the cluster's processes {mem['early_sum']:.0f} MiB, "
              f"{mem['sum']:.0f} MiB")  # fmt: skip
        print(f"  single waits: {len(late)} resumed, lateness p50 {percentile(late, 50):.2f} s, p95 "
              f"{percentile(late, 95):.2f} s, max {max(late, default=0):.2f} s")  # fmt: skip
        ok &= one_["ok"]
        for name, line_ratio in (
            ("throughput", verdict(f"throughput ({n:,} due at once)", rate, target_rate, "executions/s", higher=True)),
            ("lateness p95", verdict("single wait lateness p95", percentile(late, 95), TARGET_LATENESS_P95, "s")),
            ("memory", verdict("largest process's peak RSS / its first 10 s peak", mem["largest"] /
                               max(mem["early_largest"], 1e-9), FLAT, "x")),
        ):  # fmt: skip
            lines.append(line_ratio[0])
            ratios[name] = line_ratio[1]
        profile_size = args.profile or (2000 if min(ratios.values()) < 1 else 0)
        if profile_size:
            print(f"profiling resumer_step in one process over {profile_size:,} due executions ...", flush=True)
            found = flows_django(env, "profile", {"flows": one_["flows"], "executions": profile_size})
            per = 1000 / max(found["executions"], 1)
            print(f"  {found['completed']:,}/{2 * found['executions']:,} completed; without the profiler, per "
                  f"execution: {found['wall'] * per:.2f} ms wall, {found['cpu'] * per:.2f} ms CPU in this process "
                  f"(the rest of the wall: waiting on PostgreSQL), {found['queries'] / max(found['executions'], 1):.2f}"
                  f" statements; under the profiler {found['profiled_cpu'] * per:.2f} ms CPU")  # fmt: skip
            kinds = ", ".join(f"{k} {v}" for k, v in found["kinds"].items())
            print(f"  statements ({found['passes']} passes): {kinds}")
            print(found["profile"])
        if not args.skip_phase2:
            two = phase2(env, args, url)
            lat = two["latencies"]
            print(f"phase 2: {len(lat)} of {args.followers} followers got the welcome DM ({two['missing']} none, "
                  f"{two['extra']} extra, {two['wrong']} with a wrong text); {two['delivered']} follow events "
                  f"delivered with 200; the follow call (its webhook delivery included) p50 "
                  f"{percentile(two['calls'], 50) * 1000:.0f} ms; latency p50 {percentile(lat, 50):.2f} s, p95 "
                  f"{percentile(lat, 95):.2f} s, max {max(lat, default=0):.2f} s")  # fmt: skip
            print("  from the follow call, p50 / p95 until " + "; ".join(
                f"{label} {percentile(two['stages'][key], 50):.2f} / {percentile(two['stages'][key], 95):.2f} s"
                for label, key in STAGES))  # fmt: skip
            ok &= not two["missing"] and not two["extra"] and not two["wrong"] and two["delivered"] == args.followers
            for name, line_ratio in (
                ("first DM p50", verdict("follow to first DM p50", percentile(lat, 50), TARGET_DM_P50, "s")),
                ("first DM p95", verdict("follow to first DM p95", percentile(lat, 95), TARGET_DM_P95, "s")),
            ):
                lines.append(line_ratio[0])
                ratios[name] = line_ratio[1]
    finally:
        redis_flush(REDIS_URL)
    print("figures against their targets (ratio >= 1 means the target is met):")
    for line in lines:
        print(line)
    worst = min(ratios, key=lambda k: ratios[k])
    passed = ok and ratios[worst] >= 1
    print(f"{'PASS' if passed else 'FAIL'} flows: worst ratio to its target {ratios[worst]:.2f} ({worst}; "
          f">= 1 means met); correctness {'ok' if ok else 'WRONG'}")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
