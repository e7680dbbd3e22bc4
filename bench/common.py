"""Shared plumbing of the benchmarks: a scratch PostgreSQL database, a gunicorn server, percentiles."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
from multiprocessing.pool import Pool as PoolType
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-consumer-secret"


def bench_env(database: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database,
        "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghij",
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
    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "gunicorn", "mktx.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env)

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
