"""The campaign sender against the X sandbox (PostgreSQL, Redis, a real django-q2 cluster).

Phase 1, throughput: 10,000 recipients over 10 sandbox accounts, every limit raised; the campaign is started
through the service and sent by the cluster's sender loops. Its sends per second are compared with the sandbox's
capacity measured in the same run: the same number of processes sending signed DMs straight to the sandbox.

Phase 2, pacing: 10 fresh accounts with X's limit set in the sandbox (`--dm15m` DMs per 15 minutes each; the
service's own limits raised, so X's is the one that binds); for `--window` seconds from the first send, the share
of the allowed rate actually used, and the number of 429s (target: at least 95%, zero 429s).

    .venv/bin/python bench/send.py [--recipients 10000] [--accounts 10] [--workers 4] [--dm15m 450] [--window 60]

The last lines print the ratios; figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import requests

from bench.common import PG_ADMIN_URL, ROOT, bench_env, free_port, fresh_database, manage

DATABASE = "mktx_bench_send"
REDIS_URL = "redis://127.0.0.1:6379/12"

SETUP = """
import json, sys
import django
django.setup()
from django.db import transaction
from campaigns.lifecycle import campaign_create
from campaigns.models import Template
from contacts.models import Contact, Segment, Tag, ContactTag
from mktx.accounts.crypto import encrypt
from mktx.accounts.models import Account
from mktx.iam.models import Merchant

spec = json.loads(sys.stdin.read())
merchant, _ = Merchant.objects.get_or_create(name="Bench Send")
tag_name = spec["tag"]
tag, _ = Tag.objects.get_or_create(merchant=merchant, name=tag_name)
with transaction.atomic():
    for shop in spec["accounts"]:
        account = Account.objects.create(
            merchant=merchant, twitter_user_id=shop["id"], username=shop["username"],
            oauth_token_encrypted=encrypt(shop["oauthToken"]),
            oauth_token_secret_encrypted=encrypt(shop["oauthTokenSecret"]),
        )
        contacts = Contact.objects.bulk_create([
            Contact(merchant=merchant, account=account, twitter_user_id=r["id"], username=r["username"],
                    display_name=r["name"], tag_names=[tag_name], source="inbound_message")
            for r in shop["recipients"]
        ], batch_size=1000)
        ContactTag.objects.bulk_create([ContactTag(contact=c, tag=tag) for c in contacts], batch_size=1000)
segment = Segment.objects.create(merchant=merchant, name=tag_name, conditions=[
    {"field": "tags", "operator": "contains", "value": tag_name}])
template, _ = Template.objects.get_or_create(merchant=merchant, name="bench",
    defaults={"content": "Hi {{contact.displayName|friend}}, our sale: https://shop.example/sale"})
campaign = campaign_create(merchant_id=merchant.pk, values={
    "name": tag_name, "type": "promotional", "templateId": str(template.pk), "segmentIds": [str(segment.pk)]})
print(json.dumps({"campaign": str(campaign.pk)}))
"""

START = """
import sys
import django
django.setup()
from campaigns.lifecycle import campaign_start
from campaigns.models import Campaign
campaign_start(campaign=Campaign.objects.get(pk=sys.argv[1]))
"""

CAPACITY = """
import json, sys, time
from multiprocessing import Pool
import django
django.setup()
from mktx.xapi.client import XClient

def send(job):
    token, secret, recipients = job
    client = XClient(token, secret)
    for r in recipients:
        client.send_dm(r, text="capacity probe https://shop.example/sale")
    return len(recipients)

jobs = json.loads(sys.stdin.read())
started = time.perf_counter()
with Pool(len(jobs)) as pool:
    sent = sum(pool.map(send, [tuple(j) for j in jobs]))
print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started}))
"""


class Sandbox:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "xsandbox", "--port", str(self.port), "--dm-limit-15m", "100000000",
                "--dm-limit-24h", "100000000", "--consumer-key", env["X_CONSUMER_KEY"],
                "--consumer-secret", env["X_CONSUMER_SECRET"]]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self.session = requests.Session()
        for _ in range(100):
            try:
                self.session.get(self.url + "/_sandbox/dms", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        response = self.session.post(self.url + path, json=body, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def users(self, prefix: str, n: int) -> list[dict[str, object]]:
        def make(i: int) -> dict[str, object]:
            body = {"username": f"{prefix}{i}", "name": f"Fan {i}"}
            response = requests.post(self.url + "/_sandbox/users", json=body, timeout=10)
            response.raise_for_status()
            return dict(response.json())

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(make, range(n)))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def setup(env: dict[str, str], sandbox: Sandbox, tag: str, accounts: int, per_account: int) -> tuple[str, list]:
    shops = []
    for a in range(accounts):
        shop = sandbox.post("/_sandbox/users", {"username": f"{tag}_shop{a}", "name": f"Shop {a}"})
        shop["recipients"] = sandbox.users(f"{tag}_{a}_", per_account)
        shops.append(shop)
    made = subprocess.run(
        [sys.executable, "-c", SETUP], input=json.dumps({"tag": tag, "accounts": shops}),
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode:
        raise RuntimeError(made.stderr[-3000:])
    return json.loads(made.stdout.strip().splitlines()[-1])["campaign"], shops


def start(env: dict[str, str], campaign: str) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-c", START, campaign], cwd=ROOT, env=env, check=True)
    return started


def counts(conn: psycopg.Connection, campaign: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s GROUP BY status", [campaign]
    ).fetchall()
    return {status: int(n) for status, n in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="django-q workers, sender lanes, capacity processes")
    parser.add_argument("--dm15m", type=int, default=450, help="phase 2: X's DM limit per 15 minutes per account")
    parser.add_argument("--window", type=int, default=60, help="phase 2: seconds measured")
    args = parser.parse_args()

    fresh_database(DATABASE)
    sandbox_port = free_port()
    env = bench_env(
        DATABASE,
        REDIS_URL=REDIS_URL,
        MKTX_CACHE_PREFIX="bench-send",
        X_API_BASE_URL=f"http://127.0.0.1:{sandbox_port}",
        MKTX_X_DM_DAILY_LIMIT="100000000",
        MKTX_CAMPAIGN_DAILY_LIMIT="100000000",
        MKTX_WORKERS=str(args.workers),
        MKTX_SENDER_LANES=str(args.workers),
        MKTX_INLINE_FREEZE_LIMIT="100000000",
        MKTX_PUBLIC_URL="https://mktx.example",
    )
    manage(env, "migrate", "--noinput")
    subprocess.run(["redis-cli", "-n", REDIS_URL.rsplit("/", 1)[1], "flushdb"], check=True, stdout=subprocess.DEVNULL)
    sandbox = Sandbox(env)
    env["X_API_BASE_URL"] = sandbox.url
    per_account = args.recipients // args.accounts
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE
    print(f"setting up {args.accounts} accounts x {per_account:,} recipients in the sandbox ...", flush=True)
    bulk, shops = setup(env, sandbox, "bulk", args.accounts, per_account)
    paced, _ = setup(env, sandbox, "paced", args.accounts, 100)
    cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(3)
        # --- phase 1: throughput --------------------------------------------------------------------------------
        with psycopg.connect(url, autocommit=True) as conn:
            started = start(env, bulk)
            shown, deadline = time.time(), time.time() + 1800
            while time.time() < deadline:
                now = counts(conn, bulk)
                done = sum(n for s, n in now.items() if s not in ("pending", "sending"))
                if done >= per_account * args.accounts:
                    break
                if time.time() - shown >= 10:
                    shown = time.time()
                    print(f"  {done:,}/{args.recipients:,} done after {shown - started:.0f} s", flush=True)
                time.sleep(0.2)
            elapsed = time.time() - started
            final = counts(conn, bulk)
            row = conn.execute(
                "SELECT count(*), count(DISTINCT conversation_id) FROM contacts_message m "
                "WHERE m.metadata->>'campaignId' = %s AND m.status = 'sent'", [bulk]
            ).fetchone()  # fmt: skip
        service_rate = final.get("sent", 0) / elapsed
        jobs = [(s["oauthToken"], s["oauthTokenSecret"], [r["id"] for r in s["recipients"]][: 2000 // args.workers])
                for s in shops[: args.workers]]  # fmt: skip
        probe = subprocess.run([sys.executable, "-c", CAPACITY], input=json.dumps(jobs), cwd=ROOT, env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
        capacity = json.loads(probe.stdout.strip().splitlines()[-1])
        capacity_rate = capacity["sent"] / capacity["seconds"]
        print(f"phase 1: {final.get('sent', 0):,} sent, {final.get('failed', 0)} failed, {final.get('skipped', 0)} "
              f"skipped in {elapsed:.1f} s = {service_rate:.0f} sends/s; {row[0]:,} messages sent to {row[1]:,} "  # type: ignore[index]
              f"conversations (each recipient once)")  # fmt: skip
        print(f"         sandbox capacity ({args.workers} processes sending directly): {capacity_rate:.0f} sends/s")

        # --- phase 2: pacing under X's real limit ----------------------------------------------------------------
        sandbox.post("/_sandbox/limits", {"dm15m": args.dm15m, "dm24h": 100_000_000})
        spacing = 900 / args.dm15m
        with psycopg.connect(url, autocommit=True) as conn:
            start(env, paced)
            time.sleep(args.window + 3)
            rows = conn.execute(
                "SELECT account_id, sent_at FROM campaigns_delivery WHERE campaign_id = %s AND status = 'sent'", [paced]
            ).fetchall()  # fmt: skip
            limited = conn.execute("SELECT count(*) FROM contacts_message WHERE error_code = 'RateLimited'").fetchone()[
                0
            ]  # type: ignore[index]
        firsts: dict[Any, Any] = {}
        for account_id, sent_at in sorted(rows, key=lambda r: r[1]):
            firsts.setdefault(account_id, sent_at)
        # per account, from its own first send: X allows one DM every `spacing` seconds
        in_window = [r for r in rows if (r[1] - firsts[r[0]]).total_seconds() <= args.window]
        allowed = len(firsts) * (1 + int(args.window // spacing))
        share = len(in_window) / allowed
        print(f"phase 2: X allows {args.dm15m} DMs per 15 min per account (one per {spacing:.2f} s): "
              f"{len(in_window)} sent in {args.window} s of {allowed} allowed; 429s: {limited}")  # fmt: skip
    finally:
        cluster.terminate()  # sender loops finish their budget first: do not wait for them
        try:
            cluster.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
        sandbox.stop()
    throughput = service_rate / capacity_rate
    ok = share >= 0.95 and limited == 0 and final.get("sent", 0) == per_account * args.accounts
    print(
        f"send throughput {throughput:.2f}x the sandbox's capacity ({service_rate:.0f} vs {capacity_rate:.0f} sends/s)"
    )
    print(f"{'PASS' if ok else 'FAIL'} pacing used {share:.1%} of X's allowed rate (target >= 95%), {limited} 429s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
