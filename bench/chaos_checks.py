"""What the chaos runs (bench/chaos.py, bench/chaos_limits.py) share: the API client, the qcluster killer, the API
probe that runs through a fault, campaigns made and waited for, a burst of customer DMs, and the verdict."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, pairwise
from typing import Any

import requests

from bench import send
from bench.cluster import Deployment
from bench.send import shops


def fetch_one(conn: Any, sql: str, params: Any = None) -> tuple[Any, ...]:
    """The one row a query answers (a count, a sum)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


class Verdict:
    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: list[str] = []
        self.failures: list[str] = []

    def figure(self, line: str) -> None:
        self.figures.append(line)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    @property
    def ok(self) -> bool:
        return not self.failures

    def show(self) -> None:
        for line in self.figures:
            print(f"  {line}", flush=True)
        print(
            f"{'PASS' if self.ok else 'FAIL'} {self.name}" + (f": {'; '.join(self.failures)}" if self.failures else ""),
            flush=True,
        )


class Api:
    """The REST API of the deployment for one merchant, its calls spread over the gunicorn instances in turn."""

    def __init__(self, urls: list[str], token: str, merchant: str) -> None:
        self.urls = cycle(urls)
        self.token, self.merchant = token, merchant
        self.local = threading.local()
        self.lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def call(
        self, method: str, path: str, body: Any = None, *, url: str | None = None, timeout: float = 30
    ) -> requests.Response:
        with self.lock:
            base = url or next(self.urls)
        return self._session().request(method, f"{base}/api/v1/mkt-x{path}", json=body, timeout=timeout)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.call(method, path, body, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()["data"]


class Background:
    """A thread that runs `_run` while the `with` block is open (it watches `self.stop`)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class Killer(Background):
    """While open: every 10-20 s a random qcluster process is killed with SIGKILL (its process group) and
    started again."""

    def __init__(self, d: Deployment, rng: random.Random, low: float = 10, high: float = 20) -> None:
        self.d, self.rng, self.low, self.high = d, rng, low, high
        self.kills = 0
        super().__init__()

    def _run(self) -> None:
        pause = self.low / 2  # the first one early, in the thick of the work
        while not self.stop.wait(pause):
            pause = self.rng.uniform(self.low, self.high)
            victim = self.d.kill_worker(self.rng)
            self.kills += 1
            print(f"    killed {victim.name} (SIGKILL), started again", flush=True)


class Probe(Background):
    """While open: `GET /contacts` every 0.2 s, in turn on each gunicorn; each answer's status (or the error that
    took its place) is kept under the phase `mark` last named ("before" at first)."""

    def __init__(self, d: Deployment, api: Api) -> None:
        self.d, self.api = d, api
        self.phase = "before"
        self.seen: dict[str, Counter[Any]] = {}
        super().__init__()

    def mark(self, phase: str) -> None:
        self.phase = phase

    def during(self, phase: str) -> Counter[Any]:
        return self.seen.get(phase, Counter())

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            phase = self.phase
            try:
                status: Any = self.api.call("GET", "/contacts?take=5", timeout=10).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            self.seen.setdefault(phase, Counter())[status] += 1


def campaign_made(d: Deployment, tag: str, accounts: int, per_account: int) -> tuple[list[dict[str, Any]], str, Api]:
    """Sandbox shops with `per_account` customers each, their merchant's contacts, segment, template and a draft
    campaign to all of them (bench/sender_django.py setup), and the API as an owner of that merchant."""
    assert d.sandbox is not None
    made = shops(d.sandbox, tag, accounts, per_account)
    campaign = str(d.django("sender_django", "setup", {"tag": tag, "accounts": made})["campaigns"][0])
    with d.database() as conn:
        row = fetch_one(conn, "SELECT merchant_id FROM campaigns_campaign WHERE id = %s", [campaign])
    owner = d.django("chaos_django", "owner", {"merchant": str(row[0])})
    return made, campaign, Api(d.web_urls, owner["token"], owner["merchant"])


def delivery_counts(d: Deployment, campaign: str) -> dict[str, int]:
    with d.database() as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s GROUP BY status", [campaign]
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


def campaign_wait(d: Deployment, campaign: str, timeout: float) -> dict[str, int]:
    """The campaign's deliveries by status, once it has some and none is pending or sending (or at the timeout)."""
    deadline, shown = time.time() + timeout, time.time()
    while True:
        try:
            counts = delivery_counts(d, campaign)
        except Exception:
            counts = {}
        left = counts.get("pending", 0) + counts.get("sending", 0)
        if (counts and not left) or time.time() > deadline:
            return counts
        if time.time() - shown >= 15:
            shown = time.time()
            print(f"    campaign: {counts}", flush=True)
        time.sleep(1)


def each_once(d: Deployment, made: list[dict[str, Any]], text: str = "") -> tuple[int, int, int]:
    """bench/send.py's count at this deployment's sandbox."""
    assert d.sandbox is not None
    return send.each_once(d.sandbox, made, text)


def dm_burst(d: Deployment, shop: dict[str, Any], customers: list[dict[str, Any]], rate: float, prefix: str) -> None:
    """Each customer DMs the shop once ("<prefix> <i>"), `rate` a second, through the sandbox (which delivers each
    DM to the webhook, and retries as X does when it is refused)."""
    assert d.sandbox is not None
    sandbox = d.sandbox
    started = time.time()

    def send(i: int) -> None:
        pause = started + i / rate - time.time()
        if pause > 0:
            time.sleep(pause)
        sandbox.post(
            "/_sandbox/dm", {"senderId": customers[i]["id"], "recipientId": shop["id"], "text": f"{prefix} {i}"}
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(len(customers))))


def flow_made(api: Api, name: str, nodes: list[dict[str, Any]]) -> str:
    """A `manual` flow of `nodes` in a chain, made and activated through the API."""
    connections = [{"fromNodeId": a["id"], "toNodeId": b["id"]} for a, b in pairwise(nodes)]
    body = {"name": name, "trigger": {"type": "manual", "config": {}}, "nodes": nodes, "connections": connections}
    flow = str(api.ok("POST", "/automation/flows", body)["id"])
    api.ok("POST", f"/automation/flows/{flow}/activate")
    return flow


def flow_enroll(api: Api, flow: str, contact_ids: list[str]) -> int:
    """The contacts enrolled through the API, 1,000 a call; answers how many started."""
    enrolled = 0
    for i in range(0, len(contact_ids), 1000):
        enrolled += int(
            api.ok("POST", f"/automation/flows/{flow}/enroll", {"contactIds": contact_ids[i : i + 1000]})["enrolled"]
        )
    return enrolled


def lookups(d: Deployment, made: list[dict[str, Any]]) -> tuple[int, int]:
    """X's DM-event lookups by the shops in the sandbox's current windows: (in all, the most by one shop)."""
    assert d.sandbox is not None
    used = d.sandbox.get("/_sandbox/usage")
    counts = [int(used.get(shop["id"], {}).get("dm_events", 0)) for shop in made]
    return sum(counts), max(counts or [0])
