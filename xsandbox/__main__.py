"""`python -m xsandbox [--port 5001] [--webhook-url URL] [--state FILE]`: the X sandbox alone."""

from __future__ import annotations

import argparse
import os
import sys

from xsandbox.core import Sandbox
from xsandbox.server import SandboxServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xsandbox", description="A local stand-in for the X API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--webhook-url", help="register this webhook URL at start (no CRC: the API may not be up yet)")
    parser.add_argument("--state", help="keep the state in this JSON file across restarts")
    parser.add_argument("--dm-limit-15m", type=int, default=15)
    parser.add_argument("--dm-limit-24h", type=int, default=1440)
    parser.add_argument("--consumer-key", default=os.environ.get("X_CONSUMER_KEY", "dev-consumer-key"))
    parser.add_argument("--consumer-secret", default=os.environ.get("X_CONSUMER_SECRET", "dev-consumer-secret"))
    parser.add_argument("--bearer-token", default=os.environ.get("X_BEARER_TOKEN", "dev-bearer-token"))
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    sandbox = Sandbox(
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        bearer_token=args.bearer_token,
        dm_limit_15m=args.dm_limit_15m,
        dm_limit_24h=args.dm_limit_24h,
        state_file=args.state,
    )
    if args.webhook_url and not any(w["url"] == args.webhook_url for w in sandbox.list_webhooks()["data"]):
        sandbox.register_webhook(args.webhook_url, check=False)
    server = SandboxServer(sandbox, host=args.host, port=args.port, verbose=args.verbose)
    print(f"X sandbox listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
