"""A tiny OpenAI-compatible server for the tests: `POST .../chat/completions` over real HTTP on a random port.

It records every request it gets (path, headers, JSON body), answers a programmable message content and usage, and
plays programmable faults: `slow` (sleeps past the client's timeout), `rate_limited` (429 with Retry-After),
`server_error` (500). An invalid or wrongly shaped answer is just a content: `stub.answer("not json")`.

    with OpenAIStub() as stub:
        settings.OPENAI_BASE_URL = stub.url          # ".../v1", as the openai client takes it
        stub.answer({"intent": "greeting", ...}, usage=(12, 3))
        stub.fail("rate_limited", times=1, retry_after="0")
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

FAULTS = ("slow", "rate_limited", "server_error")
DEFAULT_ANSWER = {"intent": "greeting", "confidence": 0.93, "response": "Hi! How can I help you today?", "slots": {}}


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


@dataclass
class _Fault:
    kind: str
    times: int | None  # None: every request
    retry_after: str | None
    delay: float


@dataclass
class OpenAIStub:
    host: str = "127.0.0.1"
    requests: list[StubRequest] = field(default_factory=list)
    content: str = json.dumps(DEFAULT_ANSWER)
    usage: tuple[int, int] = (120, 25)

    def __post_init__(self) -> None:
        self._fault: _Fault | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                with contextlib.suppress(OSError):  # the client gave up (a timeout): what the slow fault wants
                    stub.handle(self)

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, content: Any, *, usage: tuple[int, int] | None = None) -> None:
        """The assistant message's content from now on: a str as is, anything else as its JSON."""
        self.content = content if isinstance(content, str) else json.dumps(content)
        if usage is not None:
            self.usage = usage

    def fail(self, kind: str, *, times: int | None = None, retry_after: str | None = "1", delay: float = 2.0) -> None:
        """Play `kind` on the next `times` requests (all of them when None); `slow` sleeps `delay` seconds."""
        assert kind in FAULTS, kind
        self._fault = _Fault(kind=kind, times=times, retry_after=retry_after, delay=delay)

    @property
    def last(self) -> StubRequest:
        return self.requests[-1]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append(StubRequest("POST", handler.path, headers, body))
            fault = self._take_fault()
        if not handler.path.rstrip("/").endswith("/chat/completions"):
            self._send(handler, 404, {"error": {"message": "Unknown path", "type": "invalid_request_error"}})
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        elif fault is not None and fault.kind == "rate_limited":
            error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(handler, 429, {"error": error}, extra)
            return
        elif fault is not None:
            self._send(handler, 500, {"error": {"message": "The server had an error", "type": "server_error"}})
            return
        self._send(handler, 200, self._completion(body))

    def _take_fault(self) -> _Fault | None:
        fault = self._fault
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._fault = None
        return fault

    def _completion(self, body: Any) -> dict[str, Any]:
        prompt_tokens, completion_tokens = self.usage
        return {
            "id": f"chatcmpl-stub-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "") if isinstance(body, dict) else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
