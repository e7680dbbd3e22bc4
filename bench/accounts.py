"""The campaign sender at scale under X's real limit (PostgreSQL, Redis, a real django-q2 cluster, the X sandbox).

2,000 connected sandbox accounts, each of its own merchant with a campaign of 20 recipients (set up set-based:
merchants, accounts, contacts with their conversations and tag, segments, templates in bulk; each campaign made
with `campaign_create` and started with `campaign_start`). The sandbox holds X's real DM limit (`--dm-limit-15m 15`:
15 DMs per 15 minutes per account, so the sender spaces them one a minute); the service's own caps are its defaults.
The campaigns are started with the cluster down, then the cluster (`--workers`, `MKTX_SENDER_LANES=--lanes`) is
started and woken once, and runs for `--window` seconds past the last account's first send.

Measured:
- the share of the allowed aggregate rate used: per account from its own first send, the DMs sent in
  [first, first + window) against window / (15 min / 15) (5 per account over 5 minutes), summed over the accounts;
- how late the sends were against that even schedule, and X's 429s (messages failed with RateLimited);
- the sender's CPU per send: the CPU time of all the cluster's processes (from /proc) over the measured span,
  divided by the sends in it (PostgreSQL's and the sandbox's beside it);
- queries per send: after the cluster stops, `campaigns.lanes.sender_step` in one process over the same accounts
  for `--probe-seconds` (bench/sender_django.py probe, every query captured).

    .venv/bin/python bench/accounts.py [--accounts 2000] [--recipients 20] [--window 300] [--workers 3] [--lanes 2]

Target: a share of at least 95% with zero 429s. The last line prints the figures; they go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    PG_ADMIN_URL,
    BackendsCpu,
    Cluster,
    XSandbox,
    bench_env,
    fresh_database,
    in_django,
    manage,
    pacing_share,
    percentile,
    probe_report,
    redis_flush,
    system_cpu,
)

DATABASE = "mktx_bench_accounts"
REDIS_URL = "redis://127.0.0.1:6379/13"
X_LIMIT_15M = 15


def first_sends(conn: psycopg.Connection[Any]) -> tuple[int, datetime | None, datetime | None]:
    """(accounts that have sent, the earliest and the latest of their first sends)."""
    row = conn.execute(
        "SELECT count(*), min(first), max(first) FROM (SELECT min(sent_at) AS first FROM campaigns_delivery "
        "WHERE status = 'sent' GROUP BY account_id) firsts"
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def sent_between(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM campaigns_delivery WHERE status = 'sent' AND sent_at >= %s AND sent_at < %s", [start, end]
    ).fetchone()
    return int(row[0]) if row else 0


def rate_limited(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM contacts_message WHERE error_code = 'RateLimited'").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=20, help="per account (its campaign's audience)")
    parser.add_argument("--window", type=int, default=300, help="seconds measured from each account's first send")
    parser.add_argument("--workers", type=int, default=3, help="django-q workers")
    parser.add_argument("--lanes", type=int, default=2, help="MKTX_SENDER_LANES")
    parser.add_argument("--probe-seconds", type=int, default=150, help="the in-process probe's duration (> 60 s)")
    parser.add_argument("--profile", action="store_true", help="print the in-process probe's cProfile")
    args = parser.parse_args()
    spacing = 900 / X_LIMIT_15M

    fresh_database(DATABASE)
    env = bench_env(
        DATABASE,
        REDIS_URL=REDIS_URL,
        MKTX_CACHE_PREFIX="bench-accounts",
        MKTX_WORKERS=str(args.workers),
        MKTX_SENDER_LANES=str(args.lanes),
        MKTX_PUBLIC_URL="https://mktx.example",
    )
    manage(env, "migrate", "--noinput")
    redis_flush(REDIS_URL)
    sandbox = XSandbox(env, dm15m=X_LIMIT_15M)
    env["X_API_BASE_URL"] = sandbox.url
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE
    began = time.perf_counter()
    print(f"setting up {args.accounts:,} accounts x {args.recipients} recipients ...", flush=True)
    shops = sandbox.users([f"shop{a}" for a in range(args.accounts)])
    pool = sandbox.users([f"fan{i}" for i in range(max(args.recipients, args.accounts))])
    for a, shop in enumerate(shops):  # each account's recipients distinct; fans shared between shops
        shop["recipients"] = [pool[(a + i * 97) % len(pool)] for i in range(args.recipients)]
    made = in_django(env, "setup", {"tag": "bench", "perAccount": True, "accounts": shops})
    set_up = time.perf_counter() - began
    started = in_django(env, "start", {"campaigns": made["campaigns"]})
    print(f"  {args.accounts:,} accounts, {args.accounts * args.recipients:,} recipients set up in {set_up:.0f} s; "
          f"{started['started']:,} campaigns started in {started['seconds']:.0f} s", flush=True)  # fmt: skip
    redis_flush(REDIS_URL)  # the starts' sender kicks, queued while the cluster was down: one kick below instead

    cluster = Cluster(env)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            time.sleep(3)
            cpu_at, sandbox_at, machine_at, backends = (
                cluster.cpu(),
                sandbox.cpu(),
                system_cpu(),
                BackendsCpu(conn, DATABASE),
            )
            span_start = datetime.now(UTC)
            in_django(env, "kick", {})
            deadline = time.time() + args.window * 3 + 600
            past_window = timedelta(seconds=args.window + 2)  # the last account's window closed
            shown = polled = 0.0
            while time.time() < deadline:
                backends.sample()
                time.sleep(1)
                if time.time() - polled < 5:  # the poll reads every delivery: not every second
                    continue
                polled = time.time()
                accounts, first, last = first_sends(conn)
                if accounts >= args.accounts and last is not None and datetime.now(UTC) >= last + past_window:
                    break
                if time.time() - shown >= 15:
                    shown, at = time.time(), datetime.now(UTC)
                    print(f"  {accounts:,} accounts have sent; {sent_between(conn, span_start, at):,} DMs after "
                          f"{(at - span_start).total_seconds():.0f} s", flush=True)  # fmt: skip
            span_end = datetime.now(UTC)
            cluster_cpu, sandbox_cpu = cluster.cpu() - cpu_at, sandbox.cpu() - sandbox_at
            pg_cpu, machine_cpu = backends.total(), system_cpu() - machine_at
            span_sends = sent_between(conn, span_start, span_end)
            rows = conn.execute(
                "SELECT account_id, sent_at FROM campaigns_delivery WHERE status = 'sent' ORDER BY sent_at"
            ).fetchall()
            limited = rate_limited(conn)
            accounts, first, last = first_sends(conn)
    finally:
        cluster.stop()
    try:
        measured = in_django(env, "probe", {"seconds": args.probe_seconds, "profile": args.profile})
    finally:
        sandbox.stop()
        redis_flush(REDIS_URL)

    share, in_window, allowed, late = pacing_share(rows, spacing, args.window)
    span = (span_end - span_start).total_seconds()
    ramp = (last - first).total_seconds() if first is not None and last is not None else 0.0
    ms = 1000 / max(span_sends, 1)
    cores = os.cpu_count() or 1
    print(f"{accounts:,} of {args.accounts:,} accounts sent; their first sends spread over {ramp:.0f} s; "
          f"{span_sends:,} DMs in {span:.0f} s ({args.workers} workers, {args.lanes} sender lanes)")  # fmt: skip
    print(f"X allows {X_LIMIT_15M} DMs per 15 min per account (one per {spacing:.0f} s): {in_window:,} sent in "
          f"{args.window} s from each account's first send, of {allowed:,} allowed; 429s: {limited}")  # fmt: skip
    print(f"lateness against the even schedule from each first send: p50 {statistics.median(late or [0]):.1f} s, "
          f"p95 {percentile(late, 95):.1f} s, max {max(late or [0]):.1f} s")  # fmt: skip
    others = machine_cpu - cluster_cpu - sandbox_cpu - pg_cpu
    print(f"CPU per send: the cluster {cluster_cpu * ms:.1f} ms, PostgreSQL (its backends) {pg_cpu * ms:.1f} ms, "
          f"the sandbox {sandbox_cpu * ms:.1f} ms; the whole machine {machine_cpu / span / cores:.0%} busy, "
          f"{others / span:.2f} cores of it other work (this script, other users of the machine)")  # fmt: skip
    sends = max(1, measured["sends"])
    queries = measured["queries"] / sends
    for line in probe_report(measured, f"in-process sender over the same accounts, one lane, {args.probe_seconds} s"):
        print(line)
    if args.profile:
        print(measured["profile"])
    ok = share >= 0.95 and limited == 0 and accounts == args.accounts
    print(f"{'PASS' if ok else 'FAIL'} accounts: {args.accounts:,} accounts, share {share:.1%} of X's allowed rate, "
          f"{limited} 429s, {cluster_cpu * ms:.1f} ms CPU and {queries:.1f} queries per send")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
