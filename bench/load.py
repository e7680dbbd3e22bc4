"""Sustained mixed load against a private deployment (bench/cluster.py: two gunicorn instances, qcluster processes
behind them, PostgreSQL, Redis, the X sandbox) for `--seconds` (300).

The workload, spread over both gunicorn instances:
- X's webhook deliveries at `--webhooks` per second (200): signed `message_create` events from the shops'
  customers (a tenth of them people the service has not seen: new contacts), each event once, as X would POST
  them to a load balancer;
- reads, `--reads` per second (20) by `--readers` (4) clients: `GET /contacts?take=50`,
  `GET /conversations?status=open&take=50`, `POST /segments/{id}/preview`;
- staff replies, `--sends` per second (2): `POST /conversations/{id}/messages`, each a real DM to the sandbox.

Printed: per endpoint the requests, p50 and p99, and the 5xx (there must be none); the webhook events delivered,
stored and processed; the processing lag sampled every 5 s (the age of the oldest event not yet processed) and at
the end of the load, how long the backlog took to drain after it, and the cores each part used. PASS: webhooks
delivered at 95% of `--webhooks` or more, 0 5xx, every event stored once and processed, the lag at the end under
30 s, every staff reply at the sandbox once.

    .venv/bin/python bench/load.py [--seconds 300] [--webhooks 200] [--reads 20] [--readers 4] [--sends 2]
                                   [--workers 3] [--lanes 16]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_checks import Api, campaign_made, fetch_one
from bench.cluster import Deployment
from bench.common import SECRET, percentile
from webhooks_app.signatures import sign

HOOK = "/api/v1/mkt-x/webhooks/twitter"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter[Any]] = defaultdict(Counter)

    def add(self, name: str, seconds: float, status: Any) -> None:
        with self.lock:
            self.latency[name].append(seconds)
            self.status[name][status] += 1


def dm_event(event_id: int, shop: str, customer: str, text: str) -> bytes:
    payload = {
        "for_user_id": shop,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": str(event_id),
                "created_timestamp": str(int(time.time() * 1000)),
                "message_create": {
                    "target": {"recipient_id": shop},
                    "sender_id": customer,
                    "message_data": {
                        "text": text,
                        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
                    },
                },
            }
        ],
        "users": {
            customer: {"id": customer, "name": f"Customer {customer}", "screen_name": f"c_{customer}"},
            shop: {"id": shop, "name": "Shop", "screen_name": f"shop_{shop}"},
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def webhooks(
    d: Deployment,
    made: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    tally: Tally,
    sent: list[int],
    lane: int,
    lanes: int,
) -> None:
    """One of `lanes` senders of X's deliveries, each `rate / lanes` a second on keep-alive connections to both
    gunicorn instances in turn."""
    rng = random.Random(lane)
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in d.web_ports]
    n, started = 0, time.time()
    while not stop.is_set():
        pause = started + n / (rate / lanes) - time.time()
        if pause > 0:
            time.sleep(pause)
        event_id = 9_000_000_000 + n * lanes + lane
        shop = made[rng.randrange(len(made))]
        if rng.random() < 0.1:
            customer = str(7_000_000_000 + event_id)  # someone new
        else:
            customer = shop["recipients"][rng.randrange(len(shop["recipients"]))]["id"]
        body = dm_event(event_id, shop["id"], customer, f"load {event_id} where is my order?")
        headers = {"Content-Type": "application/json", "x-twitter-webhooks-signature": sign(SECRET, body)}
        connection = connections[n % len(connections)]
        at = time.perf_counter()
        try:
            connection.request("POST", HOOK, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status: Any = response.status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            connection.close()
        tally.add("POST /webhooks/twitter", time.perf_counter() - at, status)
        if status == 200:
            sent.append(event_id)
        n += 1


def reader(api: Api, segment: str, rate: float, stop: threading.Event, tally: Tally) -> None:
    calls: list[tuple[str, str, str, Any]] = [
        ("GET /contacts", "GET", "/contacts?take=50", None),
        ("GET /conversations", "GET", "/conversations?status=open&take=50", None),
        ("POST /segments/{id}/preview", "POST", f"/segments/{segment}/preview?limit=10", {}),
    ]
    i, started = 0, time.time()
    while not stop.is_set():
        pause = started + i / rate - time.time()
        if pause > 0:
            time.sleep(pause)
        name, method, path, body = calls[i % len(calls)]
        i += 1
        at = time.perf_counter()
        try:
            status: Any = api.call(method, path, body).status_code
        except Exception as exc:
            status = type(exc).__name__
        tally.add(name, time.perf_counter() - at, status)


def sender(
    api: Api, conversations: list[str], rate: float, stop: threading.Event, tally: Tally, replies: list[str]
) -> None:
    n, started = 0, time.time()
    while not stop.is_set():
        pause = started + n / rate - time.time()
        if pause > 0:
            time.sleep(pause)
        text = f"Staff load reply {n}"
        at = time.perf_counter()
        try:
            response = api.call(
                "POST",
                f"/conversations/{conversations[n % len(conversations)]}/messages",
                {"content": text, "type": "text"},
            )
            status: Any = response.status_code
        except Exception as exc:
            status = type(exc).__name__
        tally.add("POST /conversations/{id}/messages", time.perf_counter() - at, status)
        if status == 200:
            replies.append(text)
        n += 1


def sessions(d: Deployment) -> int:
    """PostgreSQL sessions opened so far (each a backend process, and a connection's set-up)."""
    with d.database() as conn:
        return int(fetch_one(conn, "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")[0])


def cpu_seconds(d: Deployment) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the deployment, and by this load generator, from
    /proc: each process counted under the part it descends from (gunicorn's and qcluster's children too, those that
    exited included)."""
    roots = {os.getpid(): "load generator"}
    roots.update({p.pid: "gunicorn" for p in d.web if p.alive()})
    roots.update({p.pid: "qcluster" for p in d.workers if p.alive()})
    assert d.pg is not None
    for pid, role in ((d.pg.pid(), "postgres"), (d.redis.process and d.redis.process.pid, "redis")):
        if pid:
            roots[pid] = role
    if d.sandbox is not None:
        roots[d.sandbox.process.pid] = "x sandbox"
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        # utime, stime, and the children's it has waited for (cutime, cstime): a PostgreSQL backend that exited,
        # a worker's child, counted under the process that reaped it
        ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])
    used: dict[str, float] = defaultdict(float)
    for pid, n in ticks.items():
        ancestor = pid
        while ancestor not in roots and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in roots:
            used[roots[ancestor]] += n / os.sysconf("SC_CLK_TCK")
    return used


def backlog(d: Deployment) -> tuple[int, float, int]:
    """(events not yet processed, the oldest one's age in seconds, events processed); an event that failed and
    waits for its retry is not processed yet."""
    with d.database() as conn:
        row = fetch_one(
            conn,
            "SELECT count(*) FILTER (WHERE waiting), extract(epoch FROM now() - min(received_at) FILTER (WHERE "
            "waiting)), count(*) FILTER (WHERE status = 'processed') FROM (SELECT *, status IN ('pending', "
            "'processing') OR (status = 'failed' AND next_attempt_at IS NOT NULL) AS waiting "
            "FROM webhooks_app_inboundevent) AS e",
        )
    return int(row[0]), float(row[1] or 0.0), int(row[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--webhooks", type=float, default=200)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--reads", type=float, default=20, help="reads per second, over all readers")
    parser.add_argument("--sends", type=float, default=2)
    parser.add_argument("--workers", type=int, default=3, help="qcluster processes")
    parser.add_argument(
        "--lanes", type=int, default=16, help="webhook senders, each on its schedule (4 could not offer 200/s)"
    )
    args = parser.parse_args()
    env = {"MKTX_WORKERS": "6", "MKTX_API_RATE_LIMIT": "1000000/minute"}
    print(f"starting a deployment: 2 gunicorn, {args.workers} qcluster ...", flush=True)
    with Deployment(web=2, workers=args.workers, env=env) as d:
        made, _, api = campaign_made(d, "load", 10, 200)
        with d.database() as conn:
            segment = str(fetch_one(conn, "SELECT id FROM contacts_segment WHERE merchant_id = %s", [api.merchant])[0])
            conversations = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM contacts_conversation WHERE merchant_id = %s", [api.merchant]
                ).fetchall()
            ]
        tally, stop = Tally(), threading.Event()
        sent: list[int] = []
        replies: list[str] = []
        lanes = args.lanes
        threads = [
            threading.Thread(target=webhooks, args=(d, made, args.webhooks, stop, tally, sent, i, lanes))
            for i in range(lanes)
        ]
        threads += [
            threading.Thread(target=reader, args=(api, segment, args.reads / args.readers, stop, tally))
            for _ in range(args.readers)
        ]
        threads.append(threading.Thread(target=sender, args=(api, conversations, args.sends, stop, tally, replies)))
        print(f"load for {args.seconds} s ...", flush=True)
        cpu_before, sessions_before = cpu_seconds(d), sessions(d)
        started = time.time()
        for thread in threads:
            thread.start()
        lags: list[float] = []
        while time.time() - started < args.seconds:
            time.sleep(5)
            left, lag, processed = backlog(d)
            lags.append(lag)
            print(
                f"  {time.time() - started:4.0f} s: {len(sent):,} events delivered, {processed:,} processed, "
                f"{left:,} waiting, lag {lag:.1f} s",
                flush=True,
            )
        stop.set()
        for thread in threads:
            thread.join()
        ended = time.time()
        cpu = {role: seconds - cpu_before.get(role, 0.0) for role, seconds in cpu_seconds(d).items()}
        opened = sessions(d) - sessions_before
        left, lag_at_end, _ = backlog(d)
        while left and time.time() - ended < 600:
            time.sleep(1)
            left, _, _ = backlog(d)
        drained = time.time() - ended
        with d.database() as conn:
            stored, distinct, processed = fetch_one(
                conn,
                "SELECT count(*), count(DISTINCT dedup_key), count(*) FILTER (WHERE status = 'processed') "
                "FROM webhooks_app_inboundevent WHERE kind = 'direct_message'",
            )
            messages = fetch_one(
                conn, "SELECT count(*) FROM contacts_message WHERE direction = 'inbound' AND content LIKE 'load %%'"
            )[0]
        assert d.sandbox is not None
        time.sleep(3)
        at_sandbox = Counter(dm["text"] for dm in d.sandbox.dms() if dm["text"].startswith("Staff load reply"))
    errors = 0
    print(f"{'endpoint':40} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name in sorted(tally.latency):
        values = tally.latency[name]
        statuses = tally.status[name]
        errors += sum(n for s, n in statuses.items() if not isinstance(s, int) or s >= 500)
        print(
            f"{name:40} {len(values):9,} {percentile(values, 50) * 1000:8.1f} {percentile(values, 99) * 1000:8.1f}"
            f"  {dict(statuses)}"
        )
    rate = len(sent) / args.seconds
    once = sum(at_sandbox.get(text) == 1 for text in replies)
    extra = sum(n - 1 for n in at_sandbox.values() if n > 1)
    print(
        f"webhooks: {len(sent):,} delivered ({rate:.0f}/s), {stored:,} stored ({distinct:,} distinct), "
        f"{processed:,} processed, {messages:,} inbound messages; lag sampled p50 {percentile(lags, 50):.1f} s, "
        f"max {max(lags or [0]):.1f} s, at the end {lag_at_end:.1f} s; drained {drained:.1f} s after the load"
    )
    print(f"staff replies: {len(replies)} answered 200, {once} at the sandbox exactly once, {extra} extra")
    print(
        "cores used during the load: "
        + ", ".join(
            f"{role} {seconds / (ended - started):.2f}"
            for role, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        )
        + f" (of {os.cpu_count()}); PostgreSQL sessions opened meanwhile: {opened:,}"
    )
    target = 0.95 * args.webhooks
    ok = (
        rate >= target
        and errors == 0
        and stored == distinct == len(sent) == processed
        and lag_at_end < 30
        and not left
        and once == len(replies)
        and not extra
    )
    print(
        f"{'PASS' if ok else 'FAIL'} load: {rate:.0f} webhooks/s delivered (>= {target:.0f}), {errors} 5xx or "
        f"dropped, lag at the end {lag_at_end:.1f} s (< 30 s), {len(sent) - processed} events unprocessed"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
