"""A private deployment of the service on loopback ports, for the chaos and load runs (bench/chaos.py, bench/load.py).

It holds, each in its own process group so it can be killed whole:
- a private PostgreSQL: `initdb` in a temporary directory (as the `postgres` user when this runs as root), started
  and stopped with `pg_ctl` on a port of its own, so a run can stop and start it without touching the machine's
  server;
- a private Redis (nothing on disk), which can be stopped and started again on the same port;
- the X sandbox (`python -m xsandbox`), its DM limits raised (an account connected through `POST /accounts`
  registers the first gunicorn's webhook there, as with X);
- `--web` gunicorn instances, each on its own port, behind no proxy (MKTX_PUBLIC_URL is the first one's: X's
  webhook deliveries go there);
- `--workers` `manage.py qcluster` processes.

`Deployment` starts them in that order (the database migrated in between), waits until each answers (PostgreSQL
`pg_isready`, Redis PING, the sandbox, each gunicorn's /readyz, each qcluster's heartbeat in Redis), and tears
everything down by process id at the end, also when the run fails or is interrupted (atexit and SIGTERM).

    .venv/bin/python bench/cluster.py [--web 2] [--workers 3]      (starts one and prints its addresses; Ctrl-C ends)
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import psycopg
import redis
import requests

from bench.common import ROOT, SECRET, XSandbox, bench_env, free_port

UNLIMITED = 100_000_000
DATABASE = "mktx"


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server package")
    return candidates[-1]


def _group_kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class PrivatePostgres:
    """PostgreSQL in `root/pg`, on its own port; the socket in the data directory."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:  # initdb refuses root: the server runs as postgres
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [
                *self.as_user,
                pg_bin("initdb"),
                "-D",
                str(self.dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            "-c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [
                *self.as_user,
                pg_bin("pg_ctl"),
                "-D",
                str(self.dir),
                "-l",
                str(self.dir / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast`: the server ends every session and stops cleanly; `immediate`: as if it crashed."""
        subprocess.run(
            [*self.as_user, pg_bin("pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "-t", "60", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pid(self) -> int | None:
        try:
            return int((self.dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            _group_kill(self.process.pid)
            self.process.wait(timeout=10)
            self.process = None


class Process:
    """A service process in its own session (killed whole, with its children)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, env: dict[str, str] | None = None) -> None:
        if env is not None:
            self.env = env
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: the process and its children die at once, as in a lost machine."""
        if self.process is not None:
            _group_kill(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.process = None

    def stop(self, timeout: float = 10) -> None:
        if self.process is None:
            return
        _group_kill(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self.kill()


class Deployment:
    """The whole deployment; a context manager (`with Deployment(...) as d:`) or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        web: int = 2,
        workers: int = 3,
        env: dict[str, str] | None = None,
        web_processes: int = 2,
        web_threads: int = 4,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mktx-cluster-"))
        self.web_count, self.worker_count = web, workers
        self.web_processes, self.web_threads = web_processes, web_threads
        self.extra_env = env or {}
        self.pg: PrivatePostgres | None = None
        self.redis = PrivateRedis()
        self.sandbox: XSandbox | None = None
        self.web: list[Process] = []
        self.workers: list[Process] = []
        self.web_ports = [free_port() for _ in range(web)]
        self.web_urls = [f"http://127.0.0.1:{port}" for port in self.web_ports]
        self.env: dict[str, str] = {}
        self._stopped = False

    # --- start and stop ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Deployment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        atexit.register(self.stop)
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            self.stop()
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(143)

        signal.signal(signal.SIGTERM, on_term)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.pg = PrivatePostgres(self.root)
        self.pg.start()
        with psycopg.connect(self.pg.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.redis.start()
        self.env = bench_env(
            DATABASE,
            **{
                "DATABASE_URL": self.pg.url(),
                "REDIS_URL": self.redis.url,
                "MKTX_CACHE_PREFIX": "cluster",
                "MKTX_PUBLIC_URL": self.web_urls[0],
                "X_BEARER_TOKEN": "bench-bearer-token",
                "MKTX_X_DM_DAILY_LIMIT": str(UNLIMITED),
                "MKTX_CAMPAIGN_DAILY_LIMIT": str(UNLIMITED),
                "MKTX_API_RATE_LIMIT": "100/minute",
                "MKTX_LOGIN_RATE_LIMIT": "1000/minute",
                "MKTX_SENDER_LANES": "2",
                "MKTX_WORKERS": "4",
                "MKTX_SENDER_LEASE_SECONDS": "20",
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            },
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([sys.executable, "manage.py", "createcachetable"], cwd=ROOT, env=self.env, check=True)
        self.sandbox = XSandbox(self.env, dm15m=UNLIMITED)
        self.env["X_API_BASE_URL"] = self.sandbox.url
        for i, port in enumerate(self.web_ports):
            argv = [
                sys.executable,
                "-m",
                "gunicorn",
                "mktx.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(self.web_processes),
                "--threads",
                str(self.web_threads),
                "--log-level",
                "warning",
                "--timeout",
                "60",
                "--keep-alive",  # longer than a client's pause between requests, as behind a load balancer
                "75",
            ]
            self.web.append(Process(f"web{i}", argv, self.env, self.root / f"web{i}.log"))
        for i in range(self.worker_count):
            argv = [sys.executable, "manage.py", "qcluster"]
            self.workers.append(Process(f"worker{i}", argv, self.env, self.root / f"worker{i}.log"))
        for process in self.web + self.workers:
            process.start()
        for url in self.web_urls:
            self.wait_web(url)
        self.wait_workers()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for process in self.workers + self.web:
            process.kill()
        if self.sandbox is not None:
            try:
                self.sandbox.stop()
            except Exception:
                self.sandbox.process.kill()
        self.redis.stop()
        if self.pg is not None:
            self.pg.stop("immediate")
            self.pg.kill()
        if os.environ.get("MKTX_CLUSTER_KEEP"):
            print(f"kept {self.root} (logs)", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- readiness --------------------------------------------------------------------------------------------------

    def wait_web(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not become ready; see {self.root}")

    def heartbeats(self) -> int:
        """The qcluster processes alive by django-q's own stat keys in Redis (each cluster refreshes its own)."""
        client = redis.Redis.from_url(self.redis.url, socket_timeout=1)
        try:
            return len(client.keys("django_q:*:cluster:*"))
        except redis.RedisError:
            return 0

    def wait_workers(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.heartbeats() >= sum(p.alive() for p in self.workers):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the qcluster processes did not start; see {self.root}")

    # --- faults -----------------------------------------------------------------------------------------------------

    def kill_worker(self, rng: random.Random) -> Process:
        """SIGKILL a random qcluster (its whole process group) and start it again at once."""
        victim = rng.choice(self.workers)
        victim.kill()
        victim.start()
        return victim

    def restart_web(self, **env: str) -> None:
        """Every gunicorn stopped and started again with `env` on top of the deployment's."""
        changed = {**self.env, **env}
        for process in self.web:
            process.stop()
            process.start(changed)
        for url in self.web_urls:
            self.wait_web(url)

    def database(self) -> psycopg.Connection[Any]:
        assert self.pg is not None
        return psycopg.connect(self.pg.url(), autocommit=True)

    def django(self, module: str, command: str, spec: dict[str, Any]) -> dict[str, Any]:
        """One of the bench's in-Django helpers (`python -m bench.<module> <command>`) against this deployment."""
        import json

        done = subprocess.run(
            [sys.executable, "-m", f"bench.{module}", command],
            input=json.dumps(spec),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"{module} {command} failed:\n{done.stderr[-4000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", type=int, default=2, help="gunicorn instances")
    parser.add_argument("--workers", type=int, default=3, help="qcluster processes")
    args = parser.parse_args()
    with Deployment(web=args.web, workers=args.workers) as deployment:
        assert deployment.pg is not None and deployment.sandbox is not None
        print(
            f"PostgreSQL {deployment.pg.url()}\nRedis      {deployment.redis.url}\nsandbox    "
            f"{deployment.sandbox.url}\nAPI        {' '.join(deployment.web_urls)}\nworkers    "
            f"{' '.join(str(p.pid) for p in deployment.workers)}\nlogs       {deployment.root}\n"
            f"consumer secret {SECRET}; Ctrl-C stops everything",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
