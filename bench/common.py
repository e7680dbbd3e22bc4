"""Shared plumbing of the benchmarks: a scratch PostgreSQL database, a gunicorn server, percentiles; for the sender
benchmarks the X sandbox in its own process, a django-q2 cluster, and CPU time read from /proc."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from multiprocessing.pool import Pool as PoolType
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-consumer-secret"


def bench_env(database: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database,
        "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghij",
        # production keys of their own (the deploy checks refuse the secret key's), fixed values for the bench only
        "JWT_SIGNING_KEY": "bench-only-jwt-signing-key-0123456789-abcdef",
        "FIELD_ENCRYPTION_KEY": "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE=",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MKTX_SSL_REDIRECT": "0",
        "DEBUG": "0",
        "X_CONSUMER_KEY": "bench-consumer-key",
        "X_CONSUMER_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
        "LOG_LEVEL": "WARNING",
        "MKTX_API_RATE_LIMIT": "1000000/minute",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def fresh_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gunicorn:
    """The API in gunicorn on a free port; `public`: MKTX_PUBLIC_URL is its own address (X's webhook deliveries
    and the registered webhook come to it)."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 4, *, public: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "gunicorn", "mktx.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, env={**env, "MKTX_PUBLIC_URL": self.url} if public else env)

    def __enter__(self) -> Gunicorn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


Request = tuple[str, str, bytes | None, dict[str, str]]  # method, path, body, headers


def timed_requests(args: tuple[int, list[Request]]) -> list[float]:
    """Send the requests one after another on one keep-alive connection; each one's latency in seconds."""
    port, requests = args
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for method, path, body, headers in requests:
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}")
    connection.close()
    return latencies


def run_clients(pool: PoolType, port: int, per_client: list[list[Request]]) -> tuple[float, list[float]]:
    """One pool process per list of requests, all at once: (requests per second, latencies)."""
    started = time.perf_counter()
    results = pool.map(timed_requests, [(port, requests) for requests in per_client])
    elapsed = time.perf_counter() - started
    latencies = [latency for chunk in results for latency in chunk]
    return len(latencies) / elapsed, latencies


# --- the sender benchmarks: the X sandbox, the cluster, CPU time ------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, children: bool = True) -> float:
    """CPU seconds of a process (user + system), with those of its children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return parents


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants, the ones that ended and were waited for included."""
    parents = _parents()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(process_cpu(pid) for pid in tree)


def system_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; idle and iowait excluded)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


class BackendsCpu:
    """CPU seconds of the PostgreSQL backends serving one database (the caller's own excluded), sampled (`sample()`,
    every second or so) from pg_stat_activity and /proc: a backend that ends between two samples loses at most its
    last interval. Only this database's: other work on the shared server does not count."""

    def __init__(self, conn: psycopg.Connection[Any], database: str) -> None:
        self.conn, self.database = conn, database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sample()
        self.first = dict(self.last)

    def sample(self) -> None:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.database]
        ).fetchall()
        for (pid,) in rows:
            cpu = process_cpu(int(pid), children=False)
            if cpu:
                self.last[int(pid)] = max(cpu, self.last.get(int(pid), 0.0))

    def total(self) -> float:
        self.sample()
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def redis_flush(url: str) -> None:
    subprocess.run(["redis-cli", "-n", url.rsplit("/", 1)[1], "flushdb"], check=True, stdout=subprocess.DEVNULL)


class XSandbox:
    """The X sandbox in its own process, with its DM limits per account (`dm15m` per 15 minutes, `dm24h` per day)."""

    def __init__(self, env: dict[str, str], *, dm15m: int, dm24h: int = 100_000_000) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "xsandbox", "--port", str(self.port), "--dm-limit-15m", str(dm15m),
                "--dm-limit-24h", str(dm24h), "--consumer-key", env["X_CONSUMER_KEY"],
                "--consumer-secret", env["X_CONSUMER_SECRET"]]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self._local = threading.local()
        for _ in range(100):
            try:
                self._session().get(self.url + "/_sandbox/dms?senderId=0", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._session().post(self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def get(self, path: str) -> Any:
        response = self._session().get(self.url + path, timeout=120)
        response.raise_for_status()
        return response.json()

    def clear_faults(self) -> None:
        self._session().delete(self.url + "/_sandbox/faults", timeout=30).raise_for_status()

    def limits(self, dm15m: int, dm24h: int = 100_000_000) -> None:
        self.post("/_sandbox/limits", {"dm15m": dm15m, "dm24h": dm24h})

    def users(self, names: list[str], threads: int = 8) -> list[dict[str, Any]]:
        """X users made in the sandbox (id, username, name, oauthToken, oauthTokenSecret), in the order named."""

        def make(name: str) -> dict[str, Any]:
            return self.post("/_sandbox/users", {"username": name, "name": name.replace("_", " ").title()})

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(make, names))

    def dms(self, sender_id: str = "") -> list[dict[str, Any]]:
        """Every DM the sandbox took (from `sender_id` only, when given)."""
        response = self._session().get(self.url + "/_sandbox/dms", params={"senderId": sender_id}, timeout=120)
        response.raise_for_status()
        return list(response.json())

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Cluster:
    """`manage.py qcluster` in its own session; `cpu()` is the CPU time of all its processes so far."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                        start_new_session=True, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip

    def cpu(self) -> float:
        return tree_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()  # sender loops finish their budget first: do not wait for them
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def in_django(env: dict[str, str], command: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one of bench/sender_django.py's commands in a subprocess with `env`; its JSON answer."""

    done = subprocess.run([sys.executable, "-m", "bench.sender_django", command], input=json.dumps(spec), cwd=ROOT,
                          env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"sender_django {command} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pacing_share(
    rows: list[tuple[Any, datetime]], spacing: float, window: float
) -> tuple[float, int, int, list[float]]:
    """Per account from its own first send: the sends in [first, first + window) against the window's worth of
    X's rate (window / spacing); answers (share, sent, allowed, how late each send was against the even schedule
    from the first send, in seconds)."""
    firsts: dict[Any, datetime] = {}
    by_account: dict[Any, list[float]] = {}
    for account_id, sent_at in sorted(rows, key=lambda r: r[1]):
        first = firsts.setdefault(account_id, sent_at)
        by_account.setdefault(account_id, []).append((sent_at - first).total_seconds())
    sent, late = 0, []
    for offsets in by_account.values():
        inside = [t for t in offsets if t < window]
        sent += len(inside)
        late += [t - k * spacing for k, t in enumerate(inside)][1:]
    allowed = round(len(by_account) * window / spacing)
    return (sent / allowed if allowed else 0.0), sent, allowed, late


def probe_report(measured: dict[str, Any], title: str) -> list[str]:
    """The lines of an in-process probe (bench/sender_django.py probe): per send, its queries and CPU, in total and
    by function of the send path (each one's own share), and the statements by kind."""
    sends = max(1, measured["sends"])
    lines = [
        f"{title} ({measured['sends']:,} sends in {measured['steps']} passes): {measured['queries'] / sends:.1f} "
        f"queries and {measured['cpu'] / sends * 1000:.1f} ms CPU per send"
    ]
    parts = sorted(measured["where"].items(), key=lambda item: -item[1][2])
    lines.append(
        "  per send, by function (own share: calls, queries, CPU ms): "
        + "; ".join(
            f"{name} {calls / sends:.2f}, {queries / sends:.2f}, {cpu / sends * 1000:.2f}"
            for name, (calls, queries, cpu) in parts
        )
    )
    lines.append("  statements per send: " + ", ".join(f"{k} {n / sends:.2f}" for k, n in measured["kinds"].items()))
    return lines


STATEMENT = re.compile(
    r"^\s*(SELECT|UPDATE|INSERT INTO|DELETE FROM|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO)\b(.*)$", re.S
)
TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+"(\w+)"')


def statement_kind(sql: str) -> str:
    """A logged statement's kind for a tally: its verb and table (`SELECT contacts_message FOR UPDATE`)."""
    match = STATEMENT.match(sql)
    if match is None:
        return sql.split(None, 1)[0] if sql.strip() else "?"
    verb = match.group(1)
    if "SAVEPOINT" in verb or verb == "ROLLBACK TO":
        return "SAVEPOINT/RELEASE"
    table = TABLE.search(sql)
    locking = " FOR UPDATE" if verb == "SELECT" and "FOR UPDATE" in sql else ""
    return f"{verb} {table.group(1) if table else '?'}{locking}"
