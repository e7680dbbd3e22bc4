"""Freezing a campaign's audience (PostgreSQL, a million contacts): the service's `audience_freeze` (one
`INSERT ... SELECT` compiled from the union of the campaign's segments) against the same `INSERT ... SELECT`
written by hand, alternating in the same run, each in a transaction rolled back afterwards. The worker's memory:
the peak of Python allocations during a freeze (tracemalloc) and its resident size before and after.

    .venv/bin/python bench/fanout.py [--contacts 1000000] [--runs 5]

Reuses the database seeded by bench/inbox.py (`mktx_bench_inbox`). Target: at least 0.5x the hand-written
statement, and memory flat (the audience never passes through Python). The last line prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_env
from bench.inbox import DATABASE, REDIS_URL, database_url, ensure_seeded

WORKER = """
import json, resource, statistics, sys, time, tracemalloc
import django
django.setup()
import psycopg
from django.db import transaction
from django.utils import timezone
from campaigns.audience import audience_freeze
from campaigns.models import Campaign, CampaignRun, Template
from contacts.models import Segment

merchant_id, runs, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conditions = [{"field": "optedOut", "operator": "equals", "value": False}]
segment, _ = Segment.objects.get_or_create(merchant_id=merchant_id, name="bench:fanout",
                                           defaults={"conditions": conditions})
template, _ = Template.objects.get_or_create(merchant_id=merchant_id, name="bench:fanout",
                                             defaults={"content": "Hello {{contact.displayName|friend}}"})
campaign, _ = Campaign.objects.get_or_create(merchant_id=merchant_id, name="bench:fanout",
                                             defaults={"template": template, "status": "running"})
campaign.segments.set([segment])

HAND = '''INSERT INTO campaigns_delivery (run_id, campaign_id, contact_id, account_id, status, reason, error_detail,
  attempts, failures, next_attempt_at, dm_event_id, created_at)
SELECT %s, %s, c.id, c.account_id, 'pending', '', '', 0, 0, now(), '', now()
FROM contacts_contact c WHERE c.merchant_id = %s AND NOT c.opted_out'''

class Rollback(Exception):
    pass

def service_side():
    try:
        with transaction.atomic():
            run = CampaignRun.objects.create(campaign=campaign, number=999999, started_at=timezone.now())
            tracemalloc.start()
            started = time.perf_counter()
            count = audience_freeze(campaign=campaign, run=run)
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            raise Rollback((elapsed, count, peak))
    except Rollback as done:
        return done.args[0]

def hand_side(conn):
    with conn.transaction(force_rollback=True):
        run_id = conn.execute(
            "INSERT INTO campaigns_campaignrun (campaign_id, number, status, audience_size, started_at) "
            "VALUES (%s, 999998, 'running', 0, now()) RETURNING id", [campaign.pk]).fetchone()[0]
        started = time.perf_counter()
        cursor = conn.execute(HAND, [run_id, campaign.pk, merchant_id])
        return time.perf_counter() - started, cursor.rowcount

rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
service, hand, peaks, counts = [], [], [], set()
with psycopg.connect(url) as conn:
    for _ in range(runs):
        elapsed, count, peak = service_side()
        service.append(elapsed); peaks.append(peak); counts.add(count)
        elapsed, count = hand_side(conn)
        hand.append(elapsed); counts.add(count)
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"service": service, "hand": hand, "peaks": peaks, "counts": sorted(counts),
                  "rss_before_kb": rss_before, "rss_after_kb": rss_after}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    env = bench_env(DATABASE, REDIS_URL=REDIS_URL, MKTX_CACHE_PREFIX="bench-fanout")
    merchant_id = ensure_seeded(env, args.contacts)
    done = subprocess.run(
        [sys.executable, "-c", WORKER, merchant_id, str(args.runs), database_url()],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the freeze worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if len(result["counts"]) != 1:
        raise RuntimeError(f"the two statements froze different audiences: {result['counts']}")
    recipients = result["counts"][0]
    service = sorted(result["service"])[len(result["service"]) // 2]
    hand = sorted(result["hand"])[len(result["hand"]) // 2]
    ratio = hand / service  # throughput ratio: the service's speed against the hand-written statement's
    peak_mb = max(result["peaks"]) / 1e6
    rss_growth_mb = (result["rss_after_kb"] - result["rss_before_kb"]) / 1024
    print(f"audience frozen: {recipients:,} recipients per run, {args.runs} runs each side")
    print(f"service audience_freeze   median {service * 1000:8.0f} ms  ({recipients / service:,.0f} rows/s)")
    print(f"hand-written INSERT/SELECT median {hand * 1000:8.0f} ms  ({recipients / hand:,.0f} rows/s)")
    print(f"worker memory: Python allocations peak {peak_mb:.2f} MB during a freeze; resident size grew "
          f"{rss_growth_mb:.1f} MB over {args.runs} freezes of {recipients:,} recipients")  # fmt: skip
    ok = ratio >= 0.5 and peak_mb < 5
    print(f"{'PASS' if ok else 'FAIL'} fanout {ratio:.2f}x the hand-written INSERT ... SELECT (target >= 0.5x), "
          f"memory flat: {peak_mb:.2f} MB peak")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
