"""Inbox reads with a million contacts on PostgreSQL, through gunicorn: `GET /contacts?take=100` with a tag filter
and a search, and `GET /conversations?status=open`, against a minimal Django view running the same SQL (captured
from the real endpoint first) in the same run.

    .venv/bin/python bench/inbox.py [--contacts 1000000] [--requests 300] [--concurrency 1] [--rounds 3]

The database `mktx_bench_inbox` is seeded once with `seed_demo` and reused while it holds enough contacts.
Targets: at least 0.5x the minimal view's throughput and p50 under 50 ms. The last line prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from multiprocessing.pool import Pool as PoolType
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import PG_ADMIN_URL, ROOT, Gunicorn, Request, bench_env, manage, percentile, run_clients

DATABASE = "mktx_bench_inbox"
REDIS_URL = "redis://127.0.0.1:6379/13"
ENDPOINTS = {
    "contacts": "/api/v1/mkt-x/contacts?take=100&tags=vip&search=user_123",
    "conversations": "/api/v1/mkt-x/conversations?status=open",
}
# Reported, not judged: a broad search (user_12 matches 11,111 of the million; user_123, 1,111) and the plain list.
EXTRA = {
    "contacts-broad": "/api/v1/mkt-x/contacts?take=100&tags=vip&search=user_12",
    "contacts-all": "/api/v1/mkt-x/contacts?take=100",
}

CAPTURE = """
import json, sys
import django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from mktx.iam.models import Merchant, Role, User
from mktx.iam.tokens import tokens_for_user

merchant = Merchant.objects.get(pk=sys.argv[1])
user = User.objects.filter(email="bench@mktx.local").first() or User.objects.create_user(
    "bench@mktx.local", "bench-password-1", merchant=merchant, role=Role.OWNER)
token = tokens_for_user(user)["accessToken"]
captured = {}
for name, path in json.loads(sys.argv[2]).items():
    with CaptureQueriesContext(connection) as ctx:
        response = Client(HTTP_HOST="localhost").get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    captured[name] = [q["sql"] for q in ctx.captured_queries]
print(json.dumps({"token": token, "sql": captured}))
"""


def database_url() -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE


def ensure_seeded(env: dict[str, str], contacts: int) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    manage(env, "migrate", "--noinput")
    with psycopg.connect(database_url()) as conn:
        row = conn.execute("SELECT id FROM iam_merchant WHERE name = 'Bench Inbox'").fetchone()
        have = conn.execute("SELECT count(*) FROM contacts_contact").fetchone()[0]  # type: ignore[index]
    if row is None:
        manage(env, "shell", "-c", "from mktx.iam.models import Merchant; Merchant.objects.create(name='Bench Inbox')")
        with psycopg.connect(database_url()) as conn:
            row = conn.execute("SELECT id FROM iam_merchant WHERE name = 'Bench Inbox'").fetchone()
    merchant_id = str(row[0])  # type: ignore[index]
    if have < contacts:
        print(f"seeding {contacts - have:,} contacts (once; the database is kept for later runs) ...", flush=True)
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "seed_demo",
                "--merchant-id",
                merchant_id,
                "--contacts",
                str(contacts - have),
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
    return merchant_id


def run_phase(
    pool: PoolType, port: int, path: str, token: str, requests: int, concurrency: int
) -> tuple[float, list[float]]:
    request: Request = ("GET", path, None, {"Authorization": f"Bearer {token}"})
    return run_clients(pool, port, [[request] * max(1, requests // concurrency)] * concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=1, help="clients at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    env = bench_env(DATABASE, REDIS_URL=REDIS_URL, MKTX_CACHE_PREFIX="bench-inbox")
    merchant_id = ensure_seeded(env, args.contacts)
    captured = subprocess.run(
        [sys.executable, "-c", CAPTURE, merchant_id, json.dumps({**ENDPOINTS, **EXTRA})],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    capture = json.loads(captured.stdout.strip().splitlines()[-1])
    token = capture["token"]
    for name, statements in capture["sql"].items():
        print(f"{name}: {len(statements)} queries per request")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as sql_file:
        json.dump(capture["sql"], sql_file)

    everything = {**ENDPOINTS, **EXTRA}
    results: dict[str, dict[str, list[tuple[float, list[float]]]]] = {
        n: {"mktx": [], "minimal": []} for n in everything
    }
    with Gunicorn({**env, "BENCH_SQL_FILE": sql_file.name}) as server, Pool(args.concurrency) as pool:
        for name, path in everything.items():  # warm up both
            run_phase(pool, server.port, path, token, args.concurrency * 5, args.concurrency)
            run_phase(pool, server.port, f"/bench/minimal-sql/{name}", token, args.concurrency * 5, args.concurrency)
        for round_no in range(args.rounds):
            for name, path in everything.items():
                for kind, target in (("minimal", f"/bench/minimal-sql/{name}"), ("mktx", path)):
                    throughput, latencies = run_phase(pool, server.port, target, token, args.requests, args.concurrency)
                    results[name][kind].append((throughput, latencies))
                    p50 = percentile(latencies, 50) * 1000
                    print(
                        f"round {round_no + 1} {name:13s} {kind:7s} {throughput:7.1f} req/s  p50 {p50:6.1f} ms",
                        flush=True,
                    )

    verdicts = []
    summary = []
    for name in everything:
        mktx = statistics.median(tp for tp, _ in results[name]["mktx"])
        minimal = statistics.median(tp for tp, _ in results[name]["minimal"])
        p50 = percentile([lat for _, lats in results[name]["mktx"] for lat in lats], 50) * 1000
        ratio = mktx / minimal
        line = f"{name} {ratio:.2f}x ({mktx:.0f} vs {minimal:.0f} req/s, p50 {p50:.1f} ms)"
        if name in ENDPOINTS:
            verdicts.append(ratio >= 0.5 and p50 < 50)
            summary.append(line)
        else:
            print(f"(reported) {line}")
    print(("PASS" if all(verdicts) else "FAIL") + " inbox ratios: " + "; ".join(summary))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
