"""`make run`: the API, one task cluster (and, with the X integration, the X sandbox) in the foreground.

Ctrl-C (or any process dying) stops them all.
"""

from __future__ import annotations

import json
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


SANDBOX_PORT = int(os.environ.get("MKTX_SANDBOX_PORT", "5001"))


def _processes() -> list[Proc]:
    python = sys.executable
    public_url = os.environ.get("MKTX_PUBLIC_URL", f"http://localhost:{API_PORT}").rstrip("/")
    sandbox = [
        python, "-m", "xsandbox", "--port", str(SANDBOX_PORT),
        "--webhook-url", f"{public_url}/api/v1/mkt-x/webhooks/twitter",
        "--state", str(ROOT / "var" / "xsandbox.json"),
    ]  # fmt: skip
    return [
        Proc("x-sandbox", sandbox),
        Proc("api", [python, "-m", "gunicorn", "mktx.wsgi:application", *_gunicorn_options()]),
        Proc("worker", [python, "manage.py", "qcluster"]),
    ]


def _connect_demo_account() -> dict[str, str]:
    """The demo merchant's sandbox account, connected through the API's own service; {} when it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_connect_sandbox"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"Could not connect the demo X account: {result.stderr.strip()}", file=sys.stderr, flush=True)
        return {}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _banner(demo: dict[str, str]) -> str:
    base = f"http://localhost:{API_PORT}"
    sandbox = f"http://127.0.0.1:{SANDBOX_PORT}"
    email = os.environ.get("MKTX_DEMO_EMAIL", "demo@goodgo.local")
    password = os.environ.get("MKTX_DEMO_PASSWORD", "demo-password-1")
    login = json.dumps({"email": email, "password": password})
    lines = [
        "",
        "mktx is running (Ctrl-C stops everything)",
        f"  API base URL : {base}/api/v1/mkt-x",
        f"  API docs     : {base}/api/v1/mkt-x/docs/",
        f"  Admin        : {base}/admin/",
        f"  Health       : {base}/healthz",
        f"  Demo login   : {email} / {password}",
        f"  Get a token  : curl -s -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' -d '{login}'",
        f"  X sandbox    : {sandbox} (the demo merchant's X account is @goodgo_shop)",
    ]
    if demo:
        dm = json.dumps(
            {"senderId": demo["customerXUserId"], "recipientId": demo["shopXUserId"], "text": "Hi, where is my order?"}
        )
        lines += [
            "  Play a customer (@customer_john) DMing the shop:",
            f"    curl -s -X POST {sandbox}/_sandbox/dm -H 'Content-Type: application/json' -d '{dm}'",
        ]
    return "\n".join([*lines, ""])


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
        print(_banner(_connect_demo_account()), flush=True)
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
