"""Segments on a million contacts (PostgreSQL): count plus preview through the API (`POST /segments/{id}/preview`,
under gunicorn), and the SQL the API compiled for it (captured from the endpoint, run from this process) against
the same conditions written by hand in SQL and run from this process too, in the same run.

    .venv/bin/python bench/segments.py [--contacts 1000000] [--runs 30]

Reuses the database seeded by bench/inbox.py (`mktx_bench_inbox`), seeding it first if needed.
Targets: p50 under 100 ms per preview through the API, and the compiled SQL at most 1.3x the hand-written SQL.
The last line prints the worst ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import ROOT, Gunicorn, bench_env
from bench.inbox import DATABASE, REDIS_URL, database_url, ensure_seeded

DAY = timedelta(days=1)


def segments(now: datetime) -> dict[str, tuple[list[dict[str, object]], str]]:
    """name -> (conditions, the same filter written by hand in SQL, on the same columns and functions)."""
    since_60 = (now - 60 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "reference": (
            [
                {"field": "tags", "operator": "contains", "value": "vip"},
                {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": 5},
                {"field": "lastInteractionAt", "operator": "after", "value": since_60},
            ],
            f"""c.tag_names @> '["vip"]' AND mktx_attr_num(c.attributes, 'purchaseCount') > 5
                AND c.last_interaction_at > '{since_60}'""",
        ),
        "attribute-range": (
            [{"field": "attributes.totalSpent", "operator": "between", "value": [200000, 300000]}],
            "mktx_attr_num(c.attributes, 'totalSpent') BETWEEN 200000 AND 300000",
        ),
        "tag-in-any-group": (
            [
                {
                    "match": "any",
                    "conditions": [
                        {"field": "tags", "operator": "contains", "value": "wholesale"},
                        {"field": "attributes.membershipTier", "operator": "equals", "value": "platinum"},
                    ],
                }
            ],
            """(c.tag_names @> '["wholesale"]' OR c.attributes @> '{"membershipTier": "platinum"}')""",
        ),
        "time-window": (
            [{"field": "lastInteractionAt", "operator": "withinLastDays", "value": 7}],
            "c.last_interaction_at >= now() - interval '7 days'",
        ),
        "nested-mix": (
            [
                {"field": "source", "operator": "equals", "value": "inbound_message"},
                {
                    "match": "any",
                    "conditions": [
                        {
                            "match": "all",
                            "conditions": [
                                {"field": "tags", "operator": "contains", "value": "loyal"},
                                {"field": "attributes.purchaseCount", "operator": "greaterThanOrEqual", "value": 15},
                            ],
                        },
                        {"field": "lastInteractionAt", "operator": "withinLastDays", "value": 3},
                    ],
                },
                {"field": "optedOut", "operator": "equals", "value": False},
            ],
            """c.source = 'inbound_message' AND c.opted_out = false AND (
                (c.tag_names @> '["loyal"]' AND mktx_attr_num(c.attributes, 'purchaseCount') >= 15)
                OR c.last_interaction_at >= now() - interval '3 days')""",
        ),
    }


def hand_written(conn: psycopg.Connection, merchant_id: str, where: str) -> tuple[float, int]:
    started = time.perf_counter()
    base = f"FROM contacts_contact c WHERE c.merchant_id = %(m)s AND {where}"
    total = conn.execute(f"SELECT count(*) {base}", {"m": merchant_id}).fetchone()[0]  # type: ignore[index]
    conn.execute(
        f"SELECT c.* {base} ORDER BY c.last_interaction_at DESC NULLS LAST, c.created_at DESC LIMIT 10",
        {"m": merchant_id},
    ).fetchall()
    return time.perf_counter() - started, int(total)


def compiled_sql(conn: psycopg.Connection, statements: list[str]) -> float:
    started = time.perf_counter()
    for sql in statements:
        conn.execute(sql.replace("%", "%%")).fetchall()
    return time.perf_counter() - started


def through_api(connection: http.client.HTTPConnection, token: str, segment_id: str) -> tuple[float, int]:
    started = time.perf_counter()
    connection.request(
        "POST", f"/api/v1/mkt-x/segments/{segment_id}/preview", headers={"Authorization": f"Bearer {token}"}
    )
    response = connection.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"preview answered {response.status}: {body}")
    return time.perf_counter() - started, int(body["data"]["totalMatches"])


CREATE = """
import json, sys
import django
django.setup()
from contacts.services.segments import segment_create, segment_indexes_ensure
from contacts.models import Segment
from mktx.iam.models import User
from mktx.iam.tokens import tokens_for_user
merchant_id, specs = sys.argv[1], json.loads(sys.argv[2])
Segment.objects.filter(merchant_id=merchant_id, name__startswith="bench:").delete()
ids = {}
for name, conditions in specs.items():
    ids[name] = str(segment_create(merchant_id=merchant_id, name="bench:" + name, conditions=conditions).id)
    segment_indexes_ensure(conditions=conditions)
user = User.objects.get(email="bench@mktx.local")
token = tokens_for_user(user)["accessToken"]
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
compiled = {}
for name, segment_id in ids.items():
    with CaptureQueriesContext(connection) as ctx:
        Client().post(f"/api/v1/mkt-x/segments/{segment_id}/preview", headers={"Authorization": f"Bearer {token}"})
    sql = [q["sql"] for q in ctx.captured_queries]
    compiled[name] = [q for q in sql if "contacts_contact" in q and "contacts_segment" not in q]
print(json.dumps({"token": token, "ids": ids, "sql": compiled}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30, help="previews per segment and side")
    args = parser.parse_args()

    env = bench_env(DATABASE, REDIS_URL=REDIS_URL, MKTX_CACHE_PREFIX="bench-segments")
    merchant_id = ensure_seeded(env, args.contacts)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from mktx.iam.models import *; m=Merchant.objects.get(name='Bench Inbox'); "
         "User.objects.filter(email='bench@mktx.local').exists() or User.objects.create_user("
         "'bench@mktx.local', 'bench-password-1', merchant=m, role=Role.OWNER)"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    specs = segments(datetime.now(tz=UTC))
    made = subprocess.run(
        [sys.executable, "-c", CREATE, merchant_id, json.dumps({n: c for n, (c, _) in specs.items()})],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    created = json.loads(made.stdout.strip().splitlines()[-1])

    worst = 0.0
    verdicts = []
    with Gunicorn(env) as server, psycopg.connect(database_url(), autocommit=True) as conn:
        http_connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for name, (_, where) in specs.items():
            segment_id = created["ids"][name]
            for _ in range(3):  # warm caches on both sides
                through_api(http_connection, created["token"], segment_id)
                hand_written(conn, merchant_id, where)
            api_times, compiled_times, sql_times = [], [], []
            for _ in range(args.runs):  # alternate, so all three see the same machine
                elapsed, api_total = through_api(http_connection, created["token"], segment_id)
                api_times.append(elapsed)
                compiled_times.append(compiled_sql(conn, created["sql"][name]))
                elapsed, sql_total = hand_written(conn, merchant_id, where)
                sql_times.append(elapsed)
            if api_total != sql_total:
                raise RuntimeError(f"{name}: the API counts {api_total}, the hand-written SQL {sql_total}")
            api_p50, sql_p50 = statistics.median(api_times) * 1000, statistics.median(sql_times) * 1000
            compiled_p50 = statistics.median(compiled_times) * 1000
            ratio = compiled_p50 / sql_p50
            worst = max(worst, ratio)
            verdicts.append(api_p50 < 100 and ratio <= 1.3)
            print(
                f"{name:17s} {api_total:8,} matches  API p50 {api_p50:6.1f} ms  compiled SQL {compiled_p50:6.1f} ms  "
                f"hand-written SQL {sql_p50:6.1f} ms  {ratio:.2f}x",
                flush=True,
            )
    print(f"{'PASS' if all(verdicts) else 'FAIL'} segments worst ratio {worst:.2f}x the hand-written SQL")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
