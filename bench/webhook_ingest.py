"""Webhook ingest: signed DM events into POST /webhooks/twitter under gunicorn on PostgreSQL (Redis as the task
broker), against a minimal plain Django view doing the same verify-and-insert, measured in the same run.

    .venv/bin/python bench/webhook_ingest.py [--events 3000] [--concurrency 8] [--rounds 3]

5% of the deliveries repeat an earlier one. Checks that every distinct event is stored exactly once.
Target: at least 0.8x the minimal view's throughput, p99 under 50 ms. The last line prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from multiprocessing import Pool
from multiprocessing.pool import Pool as PoolType
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    PG_ADMIN_URL,
    ROOT,
    SECRET,
    Gunicorn,
    Request,
    bench_env,
    fresh_database,
    manage,
    percentile,
    run_clients,
)
from webhooks_app.signatures import sign

DATABASE = "mktx_bench_ingest"
REDIS_URL = "redis://127.0.0.1:6379/14"
SHOP_ID = "4337869213"
HOOK = "/api/v1/mkt-x/webhooks/twitter"
MINIMAL = "/bench/minimal-webhook"


CREATE_ACCOUNT = f"""
from mktx.accounts.models import Account
from mktx.iam.models import Merchant
Account.objects.create(merchant=Merchant.objects.create(name="Bench"), twitter_user_id="{SHOP_ID}", username="shop")
"""


def dm_body(event_id: int) -> bytes:
    customer = str(3_000_000_000 + event_id % 5000)
    payload = {
        "for_user_id": SHOP_ID,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": str(event_id),
                "created_timestamp": str(1_700_000_000_000 + event_id),
                "message_create": {
                    "target": {"recipient_id": SHOP_ID},
                    "sender_id": customer,
                    "message_data": {
                        "text": f"Hello, question {event_id} about my order",
                        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
                    },
                },
            }
        ],
        "users": {
            customer: {"id": customer, "name": "Customer", "screen_name": f"customer_{customer}"},
            SHOP_ID: {"id": SHOP_ID, "name": "GoodGo Official", "screen_name": "goodgo_shop"},
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def workload(first_id: int, events: int, duplicate_share: float, seed: int) -> tuple[list[bytes], int]:
    """Deliveries: `events` requests, `duplicate_share` of them repeating an earlier delivery."""
    rng = random.Random(seed)
    bodies: list[bytes] = []
    distinct = 0
    for _ in range(events):
        if bodies and rng.random() < duplicate_share:
            bodies.append(rng.choice(bodies))
        else:
            bodies.append(dm_body(first_id + distinct))
            distinct += 1
    return bodies, distinct


def run_phase(pool: PoolType, port: int, path: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    def signed(body: bytes) -> Request:
        headers = {"Content-Type": "application/json", "x-twitter-webhooks-signature": sign(SECRET, body)}
        return ("POST", path, body, headers)

    return run_clients(pool, port, [[signed(body) for body in bodies[i::concurrency]] for i in range(concurrency)])


def count_rows(query: str) -> int:
    with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE) as conn:
        return int(conn.execute(query).fetchone()[0])  # type: ignore[index]


def drain_with_worker(env: dict[str, str], timeout: float = 300) -> bool:
    """After the measurement: start the task cluster and wait until no stored event is left pending."""
    pending = "SELECT count(*) FROM webhooks_app_inboundevent WHERE status IN ('pending', 'processing')"
    before = count_rows(pending)
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            left = count_rows(pending)
            if left == 0:
                print(f"worker processed the {before} pending events in {time.perf_counter() - started:.1f} s")
                return True
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print(f"worker left {count_rows(pending)} of {before} events pending after {timeout:.0f} s")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="deliveries per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duplicates", type=float, default=0.05)
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    fresh_database(DATABASE)
    env = bench_env(DATABASE, REDIS_URL=REDIS_URL, MKTX_CACHE_PREFIX="bench")
    print(f"migrating {DATABASE} ...", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", CREATE_ACCOUNT)
    with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_minimal_event (id bigserial PRIMARY KEY, dedup_key varchar(200) UNIQUE NOT NULL, "
            "payload jsonb NOT NULL, received_at timestamptz NOT NULL)"
        )

    results: dict[str, list[tuple[float, list[float]]]] = {"minimal": [], "mktx": []}
    expected = {"minimal": 0, "mktx": 0}
    next_id = 10_000_000
    with Gunicorn(env) as server, Pool(args.concurrency) as pool:
        warm, _ = workload(1, 300, 0, seed=0)
        run_phase(pool, server.port, MINIMAL, warm, args.concurrency)
        run_phase(pool, server.port, HOOK, warm, args.concurrency)
        for round_no in range(args.rounds):
            for name, path in (("minimal", MINIMAL), ("mktx", HOOK)):
                bodies, distinct = workload(next_id, args.events, args.duplicates, seed=round_no)
                next_id += distinct + 1
                expected[name] += distinct
                throughput, latencies = run_phase(pool, server.port, path, bodies, args.concurrency)
                results[name].append((throughput, latencies))
                p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
                print(
                    f"round {round_no + 1} {name:8s} {throughput:8.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
                    f"  ({len(bodies)} deliveries, {distinct} distinct)",
                    flush=True,
                )

    measured = "split_part(dedup_key, ':', 2)::bigint >= 10000000"
    stored = count_rows(f"SELECT count(*) FROM webhooks_app_inboundevent WHERE {measured}")
    stored_minimal = count_rows(f"SELECT count(*) FROM bench_minimal_event WHERE {measured}")
    exactly_once = stored == expected["mktx"] and stored_minimal == expected["minimal"]
    print(f"stored: mktx {stored}/{expected['mktx']} distinct events, minimal {stored_minimal}/{expected['minimal']}")

    drained = drain_with_worker(env)

    mktx_tp = statistics.median(tp for tp, _ in results["mktx"])
    minimal_tp = statistics.median(tp for tp, _ in results["minimal"])
    mktx_p99 = percentile([lat for _, lats in results["mktx"] for lat in lats], 99) * 1000
    ratio = mktx_tp / minimal_tp
    verdict = "PASS" if ratio >= 0.8 and mktx_p99 < 50 and exactly_once and drained else "FAIL"
    print(
        f"{verdict} webhook ingest ratio {ratio:.2f}x the minimal view "
        f"({mktx_tp:.0f} vs {minimal_tp:.0f} req/s), p99 {mktx_p99:.1f} ms, exactly once: {exactly_once}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
