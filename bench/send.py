"""The campaign sender against the X sandbox (PostgreSQL, Redis, a real django-q2 cluster).

Phase 1, throughput: 10,000 recipients over 10 sandbox accounts, every limit raised (the sandbox's and the
service's daily caps); the campaign is started through the service and sent by the cluster's sender loops. Its
sends per second are compared with the sandbox's capacity measured in the same run, before and after it:
`--capacity-procs` processes sending signed DMs straight to the sandbox with the service's X client, one client
(one keep-alive connection) per process, and a client per DM (a connection each, as the outbound path sends); the
better of the two is the reference. Every recipient must have exactly one DM at the sandbox.

Phase 2, pacing: 10 fresh accounts with X's kind of limit in the sandbox (`--dm15m` DMs per 15 minutes each; the
service's daily caps raised, so X's is the one that binds); for `--window` seconds from each account's first send,
the DMs sent against the DMs X's rate allows in that time (window / (15 min / dm15m), per account), and the 429s.

Then, with the cluster stopped, the sender in this one process (`bench/sender_django.py probe`) over a fresh
campaign (limits raised): queries per send, split by where they are made, and CPU per send. The CPU per send of the
cluster (all its processes), of the database's backends and of the sandbox is read from /proc over phase 1.

    .venv/bin/python bench/send.py [--recipients 10000] [--accounts 10] [--workers 4] [--lanes 3]
                                   [--capacity-procs 4] [--dm15m 450] [--window 60] [--profile]

The last line carries both verdicts; figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    PG_ADMIN_URL,
    ROOT,
    BackendsCpu,
    Cluster,
    XSandbox,
    bench_env,
    fresh_database,
    in_django,
    manage,
    pacing_share,
    probe_report,
    redis_flush,
    system_cpu,
)

DATABASE = "mktx_bench_send"
REDIS_URL = "redis://127.0.0.1:6379/12"
UNLIMITED = 100_000_000

CAPACITY = """
import json, sys, time
from multiprocessing import Pool
import django
django.setup()
from mktx.xapi.client import XClient

def send(job):
    token, secret, recipients, reuse = job
    client = XClient(token, secret)
    for r in recipients:
        (client if reuse else XClient(token, secret)).send_dm(r, text="capacity probe https://shop.example/sale")
    return len(recipients)

jobs = json.loads(sys.stdin.read())
started = time.perf_counter()
with Pool(len(jobs)) as pool:
    sent = sum(pool.map(send, [tuple(j) for j in jobs]))
print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))
"""


def shops(sandbox: XSandbox, tag: str, accounts: int, per_account: int) -> list[dict[str, Any]]:
    made = sandbox.users([f"{tag}_shop{a}" for a in range(accounts)])
    fans = sandbox.users([f"{tag}_{a}_{i}" for a in range(accounts) for i in range(per_account)])
    for a, shop in enumerate(made):
        shop["recipients"] = fans[a * per_account : (a + 1) * per_account]
    return made


def campaign(env: dict[str, str], tag: str, made: list[dict[str, Any]]) -> str:
    return str(in_django(env, "setup", {"tag": tag, "accounts": made})["campaigns"][0])


def counts(conn: psycopg.Connection[Any], campaign_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s GROUP BY status", [campaign_id]
    ).fetchall()
    return {status: int(n) for status, n in rows}


def rate_limited(conn: psycopg.Connection[Any]) -> int:
    """X's 429s: messages failed with RateLimited (the outbound path records every answer of X)."""
    row = conn.execute("SELECT count(*) FROM contacts_message WHERE error_code = 'RateLimited'").fetchone()
    return int(row[0]) if row else 0


def each_once(sandbox: XSandbox, made: list[dict[str, Any]], text: str = "") -> tuple[int, int, int]:
    """At the sandbox: (recipients with exactly one DM from their shop, recipients with none, extra DMs), counting
    only DMs whose text starts with `text`."""
    once = missing = extra = 0
    for shop in made:
        got = Counter(dm["recipientId"] for dm in sandbox.dms(shop["id"]) if dm["text"].startswith(text))
        for r in shop["recipients"]:
            n = got.pop(r["id"], 0)
            once += n == 1
            missing += n == 0
            extra += max(0, n - 1)
        extra += sum(got.values())
    return once, missing, extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="django-q workers")
    parser.add_argument("--lanes", type=int, default=3, help="MKTX_SENDER_LANES")
    parser.add_argument("--capacity-procs", type=int, default=4, help="processes of the sandbox capacity probe")
    parser.add_argument("--dm15m", type=int, default=450, help="phase 2: X's DM limit per 15 minutes per account")
    parser.add_argument("--window", type=int, default=60, help="phase 2: seconds measured from each first send")
    parser.add_argument("--probe-recipients", type=int, default=600, help="the in-process probe's campaign size")
    parser.add_argument("--profile", action="store_true", help="print the in-process probe's cProfile")
    parser.add_argument("--throughput-only", action="store_true", help="phase 1 and the capacity probe only")
    args = parser.parse_args()

    fresh_database(DATABASE)
    env = bench_env(
        DATABASE,
        REDIS_URL=REDIS_URL,
        MKTX_CACHE_PREFIX="bench-send",
        MKTX_X_DM_DAILY_LIMIT=str(UNLIMITED),
        MKTX_CAMPAIGN_DAILY_LIMIT=str(UNLIMITED),
        MKTX_WORKERS=str(args.workers),
        MKTX_SENDER_LANES=str(args.lanes),
        MKTX_INLINE_FREEZE_LIMIT=str(UNLIMITED),
        MKTX_PUBLIC_URL="https://mktx.example",
    )
    manage(env, "migrate", "--noinput")
    redis_flush(REDIS_URL)
    sandbox = XSandbox(env, dm15m=UNLIMITED)
    env["X_API_BASE_URL"] = sandbox.url
    per_account = args.recipients // args.accounts
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE
    print(f"setting up {args.accounts} accounts x {per_account:,} recipients in the sandbox ...", flush=True)
    bulk_shops = shops(sandbox, "bulk", args.accounts, per_account)
    bulk = campaign(env, "bulk", bulk_shops)
    paced = campaign(env, "paced", shops(sandbox, "paced", args.accounts, 100))
    probe_accounts = 4
    probed = campaign(env, "probe", shops(sandbox, "probe", probe_accounts, args.probe_recipients // probe_accounts))
    capacity_shops = shops(sandbox, "capacity", args.capacity_procs, 2000 // args.capacity_procs)
    cluster = Cluster(env)
    try:
        time.sleep(3)
        # --- phase 1: throughput, between two measures of the sandbox's capacity --------------------------------
        before = capacities(env, capacity_shops)
        with psycopg.connect(url, autocommit=True) as conn:
            cpu_at, sandbox_at, machine_at, backends = (
                cluster.cpu(),
                sandbox.cpu(),
                system_cpu(),
                BackendsCpu(conn, DATABASE),
            )
            started = time.time()
            in_django(env, "start", {"campaigns": [bulk]})
            shown, deadline = time.time(), time.time() + 1800
            while time.time() < deadline:
                now = counts(conn, bulk)
                done = sum(n for s, n in now.items() if s not in ("pending", "sending"))
                if done >= per_account * args.accounts:
                    break
                if time.time() - shown >= 10:
                    shown = time.time()
                    print(f"  {done:,}/{args.recipients:,} done after {shown - started:.0f} s", flush=True)
                backends.sample()
                time.sleep(0.2)
            elapsed = time.time() - started
            cluster_cpu, sandbox_cpu, pg_cpu = cluster.cpu() - cpu_at, sandbox.cpu() - sandbox_at, backends.total()
            machine_cpu = system_cpu() - machine_at
            final = counts(conn, bulk)
            limited_bulk = rate_limited(conn)
        sent = final.get("sent", 0)
        service_rate = sent / elapsed
        once, missing, extra = each_once(sandbox, bulk_shops)
        after = capacities(env, capacity_shops)
        keep_alive, per_dm = ((before[reuse] + after[reuse]) / 2 for reuse in (True, False))
        capacity_rate = max(keep_alive, per_dm)
        print(f"phase 1: {sent:,} sent, {final.get('failed', 0)} failed, {final.get('skipped', 0)} skipped in "
              f"{elapsed:.1f} s = {service_rate:.0f} sends/s ({args.workers} workers, {args.lanes} sender lanes); "
              f"at the sandbox {once:,} recipients got exactly one DM, {missing} none, {extra} extra DMs")  # fmt: skip
        ms = 1000 / max(sent, 1)
        others = machine_cpu - cluster_cpu - sandbox_cpu - pg_cpu
        print(f"         CPU per send: the cluster {cluster_cpu * ms:.1f} ms, PostgreSQL (its backends) "
              f"{pg_cpu * ms:.1f} ms, the sandbox {sandbox_cpu * ms:.1f} ms; the whole machine "
              f"{machine_cpu / elapsed / (os.cpu_count() or 1):.0%} busy, {others / elapsed:.2f} cores of it other "
              f"work (this script, other users of the machine)")  # fmt: skip
        print(f"         sandbox capacity, {args.capacity_procs} processes sending directly: one keep-alive client "
              f"each {before[True]:.0f} sends/s before, {after[True]:.0f} after; a client per DM "
              f"{before[False]:.0f} before, {after[False]:.0f} after; reference (the better) "
              f"{capacity_rate:.0f}")  # fmt: skip
        print(f"         (against the keep-alive figure alone, the reference of the earlier runs: "
              f"{service_rate / keep_alive:.2f}x)")  # fmt: skip

        if args.throughput_only:
            return 0
        # --- phase 2: pacing under X's kind of limit ------------------------------------------------------------
        sandbox.limits(args.dm15m)
        spacing = 900 / args.dm15m
        with psycopg.connect(url, autocommit=True) as conn:
            in_django(env, "start", {"campaigns": [paced]})
            time.sleep(args.window + 5)
            rows = conn.execute(
                "SELECT account_id, sent_at FROM campaigns_delivery WHERE campaign_id = %s AND status = 'sent'", [paced]
            ).fetchall()  # fmt: skip
            limited = rate_limited(conn)
        share, in_window, allowed, late = pacing_share(rows, spacing, args.window)
        print(f"phase 2: X allows {args.dm15m} DMs per 15 min per account (one per {spacing:.2f} s): "
              f"{in_window} sent in {args.window} s from each account's first send, of {allowed} allowed; "
              f"429s: {limited}; lateness against the even schedule p50 {statistics.median(late or [0]):.2f} s, "
              f"max {max(late or [0]):.2f} s")  # fmt: skip
    finally:
        cluster.stop()
        if args.throughput_only:
            sandbox.stop()
    try:
        # --- the sender in one process: queries and CPU per send ------------------------------------------------
        sandbox.limits(UNLIMITED)
        in_django(env, "cancel", {"campaigns": [paced]})  # what phase 2 left to send: the probe sends its own only
        in_django(env, "start", {"campaigns": [probed]})
        measured = in_django(env, "probe", {"seconds": 300, "profile": args.profile})
    finally:
        sandbox.stop()
        redis_flush(REDIS_URL)
    for line in probe_report(measured, "in-process sender, one lane, a fresh campaign, limits raised"):
        print(line)
    if args.profile:
        print(measured["profile"])

    ratio = service_rate / capacity_rate
    limited_all = limited + limited_bulk
    ok = ratio >= 0.8 and share >= 0.95 and limited_all == 0 and once == args.recipients and not extra
    print(f"{'PASS' if ok else 'FAIL'} sender: capacity ratio={ratio:.2f}x ({service_rate:.0f} vs {capacity_rate:.0f} "
          f"sends/s), pacing share {share:.1%} of X's allowed rate, {limited_all} 429s")  # fmt: skip
    return 0 if ok else 1


def capacity(env: dict[str, str], made: list[dict[str, Any]], *, reuse: bool) -> float:
    """Sends per second the sandbox takes from one process per shop sending its recipients a DM straight away with
    the service's X client: one client for all its DMs (`reuse`: one keep-alive connection), or a client per DM
    (a connection each, as the service's outbound path sends)."""
    jobs = [(s["oauthToken"], s["oauthTokenSecret"], [r["id"] for r in s["recipients"]], reuse) for s in made]
    probe = subprocess.run([sys.executable, "-c", CAPACITY], input=json.dumps(jobs), cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    return float(result["sent"] / result["seconds"])


def capacities(env: dict[str, str], made: list[dict[str, Any]]) -> dict[bool, float]:
    return {reuse: capacity(env, made, reuse=reuse) for reuse in (True, False)}


if __name__ == "__main__":
    sys.exit(main())
