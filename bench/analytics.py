"""The five analytics reports over the `seed_demo` million on PostgreSQL, through gunicorn, against the same figures
computed by hand-written SQL in the same run: the statements a person would write (FILTER clauses, percentile_disc,
date_trunc in the time zone), run by a minimal view in the same gunicorn (bench/urls.py), so both pay the same
HTTP; the SQL's own answers, run again with psycopg, are checked against the API's.

    .venv/bin/python bench/analytics.py [--contacts 1000000] [--rounds 20] [--timezone Asia/Ho_Chi_Minh]

The range is the 30 days from 60 to 31 days ago (the seed's first interactions begin 30 days back), by day.
Reuses `mktx_bench_inbox` (bench/inbox.py seeds it once). Targets: each report at most 1.3x the hand-written SQL's
p50, and the overview's p50 under 300 ms. The last line prints the verdict.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import ROOT, Gunicorn, bench_env, manage, percentile, timed_requests
from bench.inbox import CAPTURE, DATABASE, REDIS_URL, database_url, ensure_seeded

TARGET_RATIO = 1.3
TARGET_OVERVIEW_MS = 300.0
OPENINGS = "('opened', 'reopened')"

CAMPAIGN_COUNTS = """count(*) FILTER (WHERE d.status IN ('sent', 'failed')), count(*) FILTER (WHERE d.status = 'sent'),
              count(*) FILTER (WHERE d.status = 'sent' AND d.opened_at IS NOT NULL),
              count(*) FILTER (WHERE d.status = 'sent' AND d.clicked_at IS NOT NULL),
              count(*) FILTER (WHERE d.status = 'sent' AND d.replied_at IS NOT NULL),
              count(*) FILTER (WHERE d.status = 'failed'), count(*) FILTER (WHERE d.status = 'skipped'),
              count(*) FILTER (WHERE d.status IN ('pending', 'sending'))"""
DELIVERY_RANGE = """COALESCE(d.attempted_at, d.created_at) >= %(start)s
              AND COALESCE(d.attempted_at, d.created_at) < %(end)s"""

SQL: dict[str, dict[str, str]] = {
    "overview": {
        "contacts": """SELECT
              (SELECT count(*) FROM contacts_contact WHERE merchant_id = %(m)s AND first_interaction_at < %(end)s)
              + (SELECT count(*) FROM contacts_contact WHERE merchant_id = %(m)s AND first_interaction_at IS NULL
                 AND created_at < %(end)s),
              (SELECT count(*) FROM contacts_contact WHERE merchant_id = %(m)s
                 AND first_interaction_at >= %(start)s AND first_interaction_at < %(end)s),
              (SELECT count(*) FROM contacts_contact WHERE merchant_id = %(m)s AND opted_out
                 AND (opted_out_at < %(end)s OR opted_out_at IS NULL))""",
        "active": """SELECT count(DISTINCT v.contact_id) FROM contacts_conversation v WHERE v.id IN (
              SELECT m.conversation_id FROM contacts_message m WHERE m.account_id = ANY(%(a)s)
                AND m.direction = 'inbound' AND m.created_at >= %(start)s AND m.created_at < %(end)s)""",
        "conversations": f"""WITH now_open AS (SELECT count(*) AS n FROM contacts_conversation
                WHERE merchant_id = %(m)s AND status = 'open'),
              since AS (SELECT
                count(*) FILTER (WHERE kind IN {OPENINGS} AND at < %(end)s) AS opened,
                count(*) FILTER (WHERE kind = 'closed' AND at < %(end)s) AS closed,
                count(*) FILTER (WHERE kind IN {OPENINGS}) AS opened_all,
                count(*) FILTER (WHERE kind = 'closed') AS closed_all,
                count(*) FILTER (WHERE kind IN {OPENINGS} AND at >= %(end)s) AS opened_after,
                count(*) FILTER (WHERE kind = 'closed' AND at >= %(end)s) AS closed_after
                FROM contacts_conversationevent WHERE merchant_id = %(m)s AND at >= %(start)s)
              SELECT since.opened, since.closed, now_open.n - since.opened_all + since.closed_all,
                now_open.n - since.opened_after + since.closed_after FROM now_open, since""",
        "total": f"""SELECT count(*) FILTER (WHERE first_opening IS NOT NULL),
              count(*) FILTER (WHERE first_closing < first_opening)
              FROM (SELECT conversation_id, min(at) FILTER (WHERE kind IN {OPENINGS}) AS first_opening,
                      min(at) FILTER (WHERE kind = 'closed') AS first_closing
                    FROM contacts_conversationevent WHERE merchant_id = %(m)s AND at >= %(start)s AND at < %(end)s
                    GROUP BY conversation_id) per_conversation""",
        "response": """SELECT round(avg(seconds)) FROM contacts_conversationresponse
              WHERE merchant_id = %(m)s AND waited_since >= %(start)s AND waited_since < %(end)s""",
        "messages": """SELECT
              (SELECT count(*) FROM contacts_message WHERE account_id = ANY(%(a)s) AND direction = 'inbound'
                 AND created_at >= %(start)s AND created_at < %(end)s),
              (SELECT count(*) FROM contacts_message WHERE account_id = ANY(%(a)s) AND direction = 'outbound'
                 AND status = 'sent' AND created_at >= %(start)s AND created_at < %(end)s)""",
        "campaigns": """SELECT
              (SELECT count(*) FROM campaigns_campaign WHERE merchant_id = %(m)s
                 AND status IN ('scheduled', 'running', 'paused')),
              (SELECT count(*) FROM campaigns_campaign WHERE merchant_id = %(m)s AND status = 'completed'
                 AND finished_at >= %(start)s AND finished_at < %(end)s),
              (SELECT count(*) FROM campaigns_delivery d JOIN campaigns_campaign c ON c.id = d.campaign_id
                 WHERE c.merchant_id = %(m)s AND d.status IN ('sent', 'failed')
                   AND COALESCE(d.attempted_at, d.created_at) >= %(start)s
                   AND COALESCE(d.attempted_at, d.created_at) < %(end)s)""",
        "ai": """SELECT
              (SELECT count(*) FROM chatbot_chatturn t JOIN chatbot_chatsession s ON s.id = t.session_id
                 WHERE s.merchant_id = %(m)s AND t.role = 'assistant' AND t.created_at >= %(start)s
                   AND t.created_at < %(end)s),
              (SELECT count(*) FROM contacts_conversation WHERE merchant_id = %(m)s
                 AND ai_escalated_at >= %(start)s AND ai_escalated_at < %(end)s),
              (SELECT count(*) FROM chatbot_aisettings WHERE merchant_id = %(m)s AND enabled)""",
        "automation": """SELECT
              (SELECT count(*) FROM automation_flow WHERE merchant_id = %(m)s AND status = 'active'),
              (SELECT count(*) FROM automation_execution WHERE merchant_id = %(m)s
                 AND started_at >= %(start)s AND started_at < %(end)s)""",
    },
    "contacts": {
        "totals": "{overview.contacts}",
        "active": "{overview.active}",
        "sources": """SELECT source, count(*) FROM contacts_contact WHERE merchant_id = %(m)s
              AND first_interaction_at >= %(start)s AND first_interaction_at < %(end)s GROUP BY source""",
        "new": """SELECT date_trunc('day', first_interaction_at AT TIME ZONE %(tz)s)::date, count(*)
              FROM contacts_contact WHERE merchant_id = %(m)s
                AND first_interaction_at >= %(start)s AND first_interaction_at < %(end)s GROUP BY 1""",
        "active_days": """SELECT date_trunc('day', m.created_at AT TIME ZONE %(tz)s)::date,
              count(DISTINCT v.contact_id) FROM contacts_message m
              JOIN contacts_conversation v ON v.id = m.conversation_id
              WHERE m.account_id = ANY(%(a)s) AND m.direction = 'inbound'
                AND m.created_at >= %(start)s AND m.created_at < %(end)s GROUP BY 1""",
    },
    "conversations": {
        "totals": "{overview.conversations}",
        "total": "{overview.total}",
        "response": """SELECT count(*), round(avg(seconds)),
              percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds),
              percentile_disc(0.9) WITHIN GROUP (ORDER BY seconds),
              count(*) FILTER (WHERE responder = 'bot'), round(avg(seconds) FILTER (WHERE responder = 'bot')),
              count(*) FILTER (WHERE seconds < 3600), count(*) FILTER (WHERE seconds >= 86400)
              FROM contacts_conversationresponse
              WHERE merchant_id = %(m)s AND waited_since >= %(start)s AND waited_since < %(end)s""",
        "resolution": """SELECT count(*), round(avg(seconds)),
              percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds), percentile_disc(0.9) WITHIN GROUP (ORDER BY seconds)
              FROM contacts_conversationevent WHERE merchant_id = %(m)s AND kind = 'closed'
                AND seconds IS NOT NULL AND at >= %(start)s AND at < %(end)s""",
        "assignees": """SELECT assigned_to_id, count(*) FROM contacts_conversation WHERE merchant_id = %(m)s
              AND assigned_to_id IS NOT NULL AND started_at < %(end)s AND last_message_at >= %(start)s GROUP BY 1""",
        "events": f"""SELECT date_trunc('day', at AT TIME ZONE %(tz)s)::date,
              count(*) FILTER (WHERE kind IN {OPENINGS}), count(*) FILTER (WHERE kind = 'closed')
              FROM contacts_conversationevent WHERE merchant_id = %(m)s AND at >= %(start)s AND at < %(end)s
              GROUP BY 1""",
        "inbound": """SELECT date_trunc('day', created_at AT TIME ZONE %(tz)s)::date, count(*) FROM contacts_message
              WHERE account_id = ANY(%(a)s) AND direction = 'inbound' AND created_at >= %(start)s
                AND created_at < %(end)s GROUP BY 1""",
        "outbound": """SELECT date_trunc('day', created_at AT TIME ZONE %(tz)s)::date, count(*) FROM contacts_message
              WHERE account_id = ANY(%(a)s) AND direction = 'outbound' AND status = 'sent'
                AND created_at >= %(start)s AND created_at < %(end)s GROUP BY 1""",
    },
    "campaigns": {
        "totals": f"""SELECT {CAMPAIGN_COUNTS} FROM campaigns_delivery d JOIN campaigns_campaign c
              ON c.id = d.campaign_id WHERE c.merchant_id = %(m)s AND {DELIVERY_RANGE}""",
        "per_campaign": f"""SELECT d.campaign_id, c.name, c.status, {CAMPAIGN_COUNTS} FROM campaigns_delivery d
              JOIN campaigns_campaign c ON c.id = d.campaign_id WHERE c.merchant_id = %(m)s AND {DELIVERY_RANGE}
              GROUP BY 1, 2, 3""",
        "series": f"""SELECT date_trunc('day', COALESCE(d.attempted_at, d.created_at) AT TIME ZONE %(tz)s)::date,
              {CAMPAIGN_COUNTS} FROM campaigns_delivery d JOIN campaigns_campaign c ON c.id = d.campaign_id
              WHERE c.merchant_id = %(m)s AND {DELIVERY_RANGE} GROUP BY 1""",
    },
    "automation": {
        "totals": "{overview.automation}",
        "status": """SELECT status, count(*) FROM automation_execution WHERE merchant_id = %(m)s
              AND started_at >= %(start)s AND started_at < %(end)s GROUP BY status""",
        "per_flow": """SELECT e.flow_id, f.name, f.nodes, count(*), count(*) FILTER (WHERE e.status = 'completed'),
              count(*) FILTER (WHERE e.status = 'failed') FROM automation_execution e
              JOIN automation_flow f ON f.id = e.flow_id WHERE e.merchant_id = %(m)s
                AND e.started_at >= %(start)s AND e.started_at < %(end)s GROUP BY 1, 2, 3""",
        "series": """SELECT date_trunc('day', started_at AT TIME ZONE %(tz)s)::date, count(*),
              count(*) FILTER (WHERE status = 'completed') FROM automation_execution WHERE merchant_id = %(m)s
                AND started_at >= %(start)s AND started_at < %(end)s GROUP BY 1""",
        "nodes": """SELECT e.flow_id, s.node_id, count(*) FROM automation_step s
              JOIN automation_execution e ON e.id = s.execution_id WHERE e.merchant_id = %(m)s
                AND s.started_at >= %(start)s AND s.started_at < %(end)s GROUP BY 1, 2""",
    },
}


ACTIVITY = """
import sys
import django
django.setup()
from automation.models import Flow, FlowVersion
from campaigns.models import Campaign, CampaignRun
merchant_id = sys.argv[1]
campaign = Campaign.objects.get_or_create(
    merchant_id=merchant_id, name="Bench analytics", defaults={"status": "completed"})[0]
CampaignRun.objects.get_or_create(campaign=campaign, number=1, defaults={"started_at": campaign.created_at})
nodes = [{"id": "a", "type": "add_tag"}, {"id": "b", "type": "add_tag"}, {"id": "c", "type": "end"}]
flow = Flow.objects.get_or_create(merchant_id=merchant_id, name="Bench analytics", defaults={
    "status": "active", "trigger_type": "manual", "nodes": nodes, "version": 1})[0]
FlowVersion.objects.get_or_create(flow=flow, number=1, defaults={"trigger_type": "manual", "nodes": nodes})
print(campaign.pk, flow.pk)
"""
# the range's campaign deliveries (200,000: 90% sent, 40% of those opened, ...) and flow executions (100,000, with
# their steps), made again on each run, spread over the 30 days
FILL = [
    "DELETE FROM campaigns_delivery WHERE campaign_id = %(campaign)s",
    "DELETE FROM automation_step WHERE execution_id IN (SELECT id FROM automation_execution WHERE flow_id = %(flow)s)",
    "DELETE FROM automation_execution WHERE flow_id = %(flow)s",
    """INSERT INTO campaigns_delivery (status, reason, error_detail, attempts, failures, dm_event_id, attempted_at,
         sent_at, opened_at, clicked_at, replied_at, created_at, account_id, campaign_id, contact_id, run_id)
       SELECT CASE WHEN k %% 20 = 0 THEN 'failed' WHEN k %% 20 = 1 THEN 'skipped' ELSE 'sent' END, '', '', 1, 0, '',
         CASE WHEN k %% 20 = 1 THEN NULL ELSE t END, CASE WHEN k %% 20 > 1 THEN t END,
         CASE WHEN k %% 20 > 1 AND k %% 5 < 2 THEN t + interval '2 hours' END,
         CASE WHEN k %% 20 > 1 AND k %% 10 = 2 THEN t + interval '3 hours' END,
         CASE WHEN k %% 20 > 1 AND k %% 20 = 3 THEN t + interval '5 hours' END,
         t, c.account_id, %(campaign)s, c.id, (SELECT id FROM campaigns_campaignrun WHERE campaign_id = %(campaign)s)
       FROM (SELECT id, account_id, row_number() OVER (ORDER BY id) AS k FROM contacts_contact
             WHERE merchant_id = %(m)s LIMIT 200000) c,
         LATERAL (SELECT %(start)s::timestamptz + (c.k %% 720) * interval '1 hour' AS t) w""",
    """INSERT INTO automation_execution (id, status, current_node_id, waiting_for, visits, state, depth, error,
         lease_holder, started_at, completed_at, updated_at, contact_id, merchant_id, flow_id, version_id)
       SELECT gen_random_uuid(),
         CASE WHEN k %% 10 < 7 THEN 'completed' WHEN k %% 10 = 7 THEN 'failed' ELSE 'running' END, '', '',
         '{}', '{}', 1, '', '', t, CASE WHEN k %% 10 < 7 THEN t + interval '1 day' END, t, c.id, %(m)s, %(flow)s,
         (SELECT id FROM automation_flowversion WHERE flow_id = %(flow)s AND number = 1)
       FROM (SELECT id, row_number() OVER (ORDER BY id DESC) AS k FROM contacts_contact
             WHERE merchant_id = %(m)s LIMIT 100000) c,
         LATERAL (SELECT %(start)s::timestamptz + (c.k %% 720) * interval '1 hour' AS t) w""",
    """INSERT INTO automation_step (node_id, type, visit, status, started_at, finished_at, detail, execution_id)
       SELECT n.node_id, 'add_tag', 1, CASE WHEN e.status = 'failed' AND n.node_id = 'b' THEN 'failed'
         ELSE 'completed' END, e.started_at, e.started_at, '{}', e.id
       FROM automation_execution e CROSS JOIN (VALUES ('a'), ('b')) AS n(node_id) WHERE e.flow_id = %(flow)s""",
    "ANALYZE campaigns_delivery",
    "ANALYZE automation_execution",
    "ANALYZE automation_step",
]


def fill_activity(env: dict[str, str], conn: psycopg.Connection[Any], merchant_id: str, start: datetime) -> None:
    made = subprocess.run(
        [sys.executable, "-c", ACTIVITY, merchant_id], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    campaign, flow = made.stdout.split()[-2:]
    for sql in FILL:
        conn.execute(sql, {"campaign": campaign, "flow": flow, "m": merchant_id, "start": start})
    conn.commit()


def statements(report: str) -> dict[str, str]:
    """A report's SQL, `{overview.x}` standing for the overview's statement x."""
    found = {}
    for name, sql in SQL[report].items():
        if sql.startswith("{overview."):
            sql = SQL["overview"][sql[len("{overview.") : -1]]
        found[name] = sql
    return found


def run_sql(conn: psycopg.Connection[Any], report: str, params: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: conn.execute(sql, params).fetchall() for name, sql in statements(report).items()}


def check(report: str, api: dict[str, Any], sql: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """The API's figures against the hand-written SQL's: what differs (an empty list when they agree)."""
    wrong: list[str] = []

    def same(label: str, got: Any, want: Any) -> None:
        if got != want:
            wrong.append(f"{report} {label}: API {got!r}, SQL {want!r}")

    if report == "overview":
        total, new, opted = sql["contacts"][0]
        same(
            "contacts", api["contacts"], {"total": total, "new": new, "active": sql["active"][0][0], "optedOut": opted}
        )
        opened, closed, open_start, open_end = sql["conversations"][0]
        distinct, both = sql["total"][0]
        c = api["conversations"]
        same("conversations", (c["total"], c["opened"], c["closed"], c["open"]),
             (open_start + distinct - both, opened, closed, open_end))  # fmt: skip
        average = sql["response"][0][0]
        same("response", c["averageResponseTimeSeconds"], None if average is None else int(average))
        same("messages", (api["messages"]["inbound"], api["messages"]["outbound"]), sql["messages"][0])
        same("campaigns", tuple(api["campaigns"].values()), sql["campaigns"][0])
        same("automation", tuple(api["automation"].values()), sql["automation"][0])
    elif report == "contacts":
        same("new", {r["date"]: r["new"] for r in api["series"] if r["new"]}, {d.isoformat(): n for d, n in sql["new"]})
        same(
            "active",
            {r["date"]: r["active"] for r in api["series"] if r["active"]},
            {d.isoformat(): n for d, n in sql["active_days"]},
        )
        same("bySource", {k: v for k, v in api["bySource"].items() if v}, dict(sql["sources"]))
    elif report == "conversations":
        n, mean, median, p90, bots, bot_mean, fast, slow = sql["response"][0]
        r = api["responseTime"]
        same("responseTime", (r["count"], r["averageSeconds"], r["medianSeconds"], r["p90Seconds"]),
             (n, None if mean is None else int(mean), median, p90))  # fmt: skip
        same(
            "bot", (r["bot"]["count"], r["bot"]["averageSeconds"]), (bots, None if bot_mean is None else int(bot_mean))
        )
        same("distribution", (r["distribution"]["0-1h"], r["distribution"]["over 24h"]), (fast, slow))
        same("opened", {x["date"]: x["opened"] for x in api["series"] if x["opened"]},
             {d.isoformat(): o for d, o, _ in sql["events"] if o})  # fmt: skip
        same("inbound", {x["date"]: x["inbound"] for x in api["series"] if x["inbound"]},
             {d.isoformat(): n for d, n in sql["inbound"]})  # fmt: skip
    elif report == "campaigns":
        keys = ("totalSent", "delivered", "opened", "clicked", "replied", "failed", "skipped", "pending")
        same("totals", tuple(api["totals"][k] for k in keys), sql["totals"][0])
        same("series", {x["date"]: x["sent"] for x in api["series"] if x["sent"]},
             {row[0].isoformat(): row[1] for row in sql["series"] if row[1]})  # fmt: skip
    elif report == "automation":
        same("totals", (api["activeFlows"], api["totalExecutions"]), sql["totals"][0])
        same("byStatus", {k: v for k, v in api["byStatus"].items() if v}, dict(sql["status"]))
        same("completed", {x["date"]: x["completed"] for x in api["series"] if x["completed"]},
             {day.isoformat(): done for day, _, done in sql["series"] if done})  # fmt: skip
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20, help="requests (and SQL runs) per report")
    parser.add_argument("--timezone", default="Asia/Ho_Chi_Minh")
    args = parser.parse_args()

    env = bench_env(DATABASE, REDIS_URL=REDIS_URL, MKTX_CACHE_PREFIX="bench-analytics")
    merchant_id = ensure_seeded(env, args.contacts)
    zone = ZoneInfo(args.timezone)
    today = datetime.now(zone).date()
    first, last = today - timedelta(days=60), today - timedelta(days=31)
    query = {"startDate": first.isoformat(), "endDate": last.isoformat(), "timezone": args.timezone}
    paths = {
        report: f"/api/v1/mkt-x/analytics/{report}?{urllib.parse.urlencode(query)}"
        for report in ("overview", "contacts", "conversations", "campaigns", "automation")
    }
    captured = subprocess.run(
        [sys.executable, "-c", CAPTURE, merchant_id, json.dumps(paths)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    capture = json.loads(captured.stdout.strip().splitlines()[-1])
    token = capture["token"]
    with psycopg.connect(database_url()) as conn:
        accounts = [
            row[0] for row in conn.execute("SELECT id FROM accounts_account WHERE merchant_id = %s", [merchant_id])
        ]
        params = {
            "m": merchant_id,
            "a": accounts,
            "tz": args.timezone,
            "start": datetime.combine(first, dtime(0), tzinfo=zone),
            "end": datetime.combine(last + timedelta(days=1), dtime(0), tzinfo=zone),
        }
        print(f"range {first} to {last} ({args.timezone}), merchant {merchant_id}", flush=True)
        fill_activity(env, conn, merchant_id, params["start"])
        print("campaign deliveries and flow executions of the range made", flush=True)
        started = time.monotonic()  # written as rows, not through the services: the rollup counts them again
        manage(env, "analytics_rollup", "--build")
        with psycopg.connect(database_url(), autocommit=True) as vacuum:  # as autovacuum would, a little later
            for table in ("tallies_tally", "contacts_contactactivity", "campaigns_delivery", "automation_execution"):
                vacuum.execute(f"VACUUM ANALYZE {table}")
        print(f"rollup built in {time.monotonic() - started:.0f} s (the overview reads it)", flush=True)
        results, problems = {}, []
        shared = {**params, "a": [str(a) for a in accounts], "start": params["start"].isoformat(),
                  "end": params["end"].isoformat()}  # fmt: skip
        with Gunicorn({**env, "BENCH_ANALYTICS_PARAMS": json.dumps(shared)}, workers=1, threads=1) as server:
            headers = {"Authorization": f"Bearer {token}"}
            for report, path in paths.items():
                reference = f"/bench/analytics-sql/{report}"
                timed_requests((server.port, [("GET", path, None, headers), ("GET", reference, None, headers)] * 3))
                api_times, sql_times = [], []
                for _ in range(args.rounds):  # alternating, so both see the same machine
                    api_times += timed_requests((server.port, [("GET", path, None, headers)]))
                    sql_times += timed_requests((server.port, [("GET", reference, None, headers)]))
                body = json.loads(_get(server.port, path, headers))["data"]
                problems += check(report, body, run_sql(conn, report, params))
                api_p50, sql_p50 = percentile(api_times, 50) * 1000, percentile(sql_times, 50) * 1000
                results[report] = (api_p50, sql_p50)
                print(
                    f"{report:14s} API {len(capture['sql'][report]):2d} queries p50 {api_p50:7.1f} ms   "
                    f"hand-written SQL {len(SQL[report])} statements p50 {sql_p50:7.1f} ms   "
                    f"ratio {api_p50 / max(sql_p50, 1e-9):.2f}",
                    flush=True,
                )
    for problem in problems:
        print("DISAGREE " + problem)
    ratios = {report: api / max(sql, 1e-9) for report, (api, sql) in results.items()}
    overview_ms = results["overview"][0]
    worst = max(ratios, key=lambda k: ratios[k])
    passed = not problems and ratios[worst] <= TARGET_RATIO and overview_ms < TARGET_OVERVIEW_MS
    print(
        f"{'PASS' if passed else 'FAIL'} analytics: worst ratio {ratios[worst]:.2f} ({worst}; "
        f"target <= {TARGET_RATIO}), "
        f"overview p50 {overview_ms:.0f} ms (target < {TARGET_OVERVIEW_MS:.0f}), figures "
        f"{'agree' if not problems else 'DISAGREE'}"
    )
    return 0 if passed else 1


def _get(port: int, path: str, headers: dict[str, str]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path, headers=headers)
    return connection.getresponse().read().decode()


if __name__ == "__main__":
    sys.exit(main())
