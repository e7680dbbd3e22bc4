"""`make run`: the API, one task cluster (and, with the X integration, the X sandbox) in the foreground.

Ctrl-C (or any process dying) stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("MKTX_PORT", "5000"))


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None


def _gunicorn_options() -> list[str]:
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    bind = f"0.0.0.0:{API_PORT}"
    return ["--bind", bind, "--workers", workers, "--threads", "4", "--access-logfile", "-", "--graceful-timeout", "5"]


def _processes() -> list[Proc]:
    python = sys.executable
    return [
        Proc("api", [python, "-m", "gunicorn", "mktx.wsgi:application", *_gunicorn_options()]),
        Proc("worker", [python, "manage.py", "qcluster"]),
    ]


def _banner() -> str:
    base = f"http://localhost:{API_PORT}"
    email = os.environ.get("MKTX_DEMO_EMAIL", "demo@goodgo.local")
    password = os.environ.get("MKTX_DEMO_PASSWORD", "demo-password-1")
    return "\n".join(
        [
            "",
            "mktx is running (Ctrl-C stops everything)",
            f"  API base URL : {base}/api/v1/mkt-x",
            f"  API docs     : {base}/api/v1/mkt-x/docs/",
            f"  Admin        : {base}/admin/",
            f"  Health       : {base}/healthz",
            f"  Demo login   : {email} / {password}",
            f"  Get a token  : curl -s -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' "
            f"""-d '{{"email": "{email}", "password": "{password}"}}'""",
            "",
        ]
    )


def _wait_for_api(timeout: float = 30.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _stop(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.popen and proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        if proc.popen is None:
            continue
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()


def main() -> int:
    procs = _processes()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for proc in procs:
        proc.popen = subprocess.Popen(proc.argv, cwd=ROOT)  # noqa: S603
    if _wait_for_api():
        print(_banner(), flush=True)
    else:
        print(f"The API did not answer on port {API_PORT}; see the log above.", file=sys.stderr, flush=True)
        stopping = True
    exit_code = 0
    while not stopping:
        for proc in procs:
            if proc.popen is not None and proc.popen.poll() is not None:
                print(f"{proc.name} exited with status {proc.popen.returncode}; stopping.", file=sys.stderr)
                stopping, exit_code = True, 1
        time.sleep(0.5)
    _stop(procs)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
