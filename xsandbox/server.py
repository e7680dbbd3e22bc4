"""The sandbox over HTTP: X's API surface (OAuth 1.0a or app bearer) and the control surface (`/_sandbox/...`)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xsandbox import links, lookup
from xsandbox.core import Sandbox
from xsandbox.model import Problem, User
from xsandbox.oauth import OAuthVerifier

MAX_BODY = 8 * 1024 * 1024


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str]
    user: User | None = None
    token: str = ""

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise Problem(400, "Invalid Request", "The body is not valid JSON") from None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Result = tuple[int, Any, dict[str, str]]
Handler = Callable[[Sandbox, Call], Result]


def _ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Result:
    return status, body, headers or {}


# --- X API handlers ---------------------------------------------------------------------------------------------------


def _users_me(sb: Sandbox, call: Call) -> Result:
    assert call.user
    headers = sb.generic_limit(call.user.id, "users_me")
    return _ok(sb.users_me(call.user), headers=headers)


def _send_dm(sb: Sandbox, call: Call) -> Result:
    assert call.user
    body, headers = sb.send_dm(call.user, call.match["pid"], call.json())
    return _ok(body, 201, headers)


def _dm_events(sb: Sandbox, call: Call) -> Result:
    assert call.user
    headers = sb.generic_limit(call.user.id, "dm_events")
    fields = lookup.requested_fields(call.arg("dm_event.fields"))
    max_results = lookup.page_size(call.arg("max_results"))
    body = sb.dm_events(call.user, call.match["pid"], max_results, fields, call.arg("pagination_token"))
    return _ok(body, headers=headers)


def _upload_media(sb: Sandbox, call: Call) -> Result:
    assert call.user
    headers = sb.generic_limit(call.user.id, "media")
    content_type = call.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise Problem(400, "Invalid Request", "media upload must be multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + call.body
    )
    media, media_type, category = b"", "", ""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        if name == "media":
            media, media_type = payload, part.get_content_type()
        elif name == "media_category":
            category = payload.decode(errors="replace").strip()
    return _ok(sb.upload_media(call.user, media, media_type, category), headers=headers)


def _invalidate_token(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.invalidate_token(call.token))


def _register_webhook(sb: Sandbox, call: Call) -> Result:
    body = call.json()
    return _ok(sb.register_webhook(str(body.get("url") or "") if isinstance(body, dict) else ""))


def _list_webhooks(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.list_webhooks())


def _subscribe(sb: Sandbox, call: Call) -> Result:
    assert call.user
    return _ok(sb.subscribe(call.match["wid"], call.user))


def _unsubscribe(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.unsubscribe(call.match["wid"], call.match["uid"]))


# --- control handlers -------------------------------------------------------------------------------------------------


def _fields(call: Call, *names: str) -> list[Any]:
    body = call.json()
    if not isinstance(body, dict):
        raise Problem(400, "Invalid Request", "The body must be a JSON object")
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise Problem(400, "Invalid Request", f"missing: {', '.join(missing)}")
    return [str(body[n]) if not isinstance(body[n], str) else body[n] for n in names]


def _c_users(sb: Sandbox, call: Call) -> Result:
    body = call.json()
    return _ok(sb.create_user(body.get("username", ""), body.get("name", ""), body.get("dmPolicy", "everyone")), 201)


def _c_user_settings(sb: Sandbox, call: Call) -> Result:
    (policy,) = _fields(call, "dmPolicy")
    return _ok(sb.user_settings(call.match["uid"], policy))


def _c_tokens(sb: Sandbox, call: Call) -> Result:
    (user_id,) = _fields(call, "userId")
    return _ok(sb.issue_token(user_id), 201)


def _c_dm(sb: Sandbox, call: Call) -> Result:
    sender, recipient, text = _fields(call, "senderId", "recipientId", "text")
    return _ok(sb.control_dm(sender, recipient, text, call.json().get("quickReplyResponse")))


def _c_follow(kind: str) -> Handler:
    def handler(sb: Sandbox, call: Call) -> Result:
        source, target = _fields(call, "sourceId", "targetId")
        return _ok(sb.control_follow(source, target, kind))

    return handler


def _c_read(sb: Sandbox, call: Call) -> Result:
    reader, other, last = _fields(call, "readerId", "otherId", "lastReadEventId")
    return _ok(sb.control_read(reader, other, last))


def _c_typing(sb: Sandbox, call: Call) -> Result:
    sender, recipient = _fields(call, "senderId", "recipientId")
    return _ok(sb.control_typing(sender, recipient))


def _c_revoke(sb: Sandbox, call: Call) -> Result:
    (user_id,) = _fields(call, "userId")
    return _ok(sb.control_revoke(user_id))


def _c_dms(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.list_dms(call.arg("senderId"), call.arg("recipientId")))


def _c_deliveries(sb: Sandbox, call: Call) -> Result:
    sb.wait_for_deliveries(float(call.arg("wait") or 0))
    return _ok(sb.list_deliveries())


def _c_media(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.list_media())


def _c_media_expire(sb: Sandbox, call: Call) -> Result:
    body = call.json()
    return _ok(sb.expire_media(str(body.get("mediaId") or "") if isinstance(body, dict) else None))


def _c_faults(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.add_fault(call.json()), 201)


def _c_faults_list(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.list_faults())


def _c_faults_clear(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.clear_faults())


def _c_limits(sb: Sandbox, call: Call) -> Result:
    body = call.json()
    limits: dict[str, Any] = sb.set_limits(body.get("dm15m"), body.get("dm24h"))
    return _ok({**limits, **sb.set_delivery(body.get("retryDelays"), body.get("deliveryTimeout"))})


def _c_usage(sb: Sandbox, call: Call) -> Result:
    return _ok(sb.usage())


def _c_tco(sb: Sandbox, call: Call) -> Result:
    """The sandbox answering for t.co: a wrapped link leads where it was written to."""
    with sb.lock:
        target = links.resolve(call.match["code"], sb.dms)
    if target is None:
        raise Problem(404, "Not Found Error", "No such t.co link")
    return _ok({"location": target}, 301, {"Location": target})


def _c_duplicate(sb: Sandbox, call: Call) -> Result:
    body = call.json()
    delivery_id, event_id = (body.get(name) if isinstance(body, dict) else None for name in ("deliveryId", "eventId"))
    if not delivery_id and not event_id:
        raise Problem(400, "Invalid Request", "missing: deliveryId or eventId")
    return _ok(sb.duplicate(str(delivery_id or ""), str(event_id or "")))


def _c_reset(sb: Sandbox, call: Call) -> Result:
    sb.reset()
    return _ok({"reset": True})


def _c_webhooks(sb: Sandbox, call: Call) -> Result:
    """Registers a webhook without the CRC check (what `--webhook-url` does at start)."""
    (url,) = _fields(call, "url")
    for webhook in sb.list_webhooks()["data"]:
        if webhook["url"] == url:
            return _ok({"data": webhook})
    return _ok(sb.register_webhook(url, check=False), 201)


USER, APP, NONE = "user", "app", "none"
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = [
    ("GET", re.compile(r"/2/users/me"), USER, _users_me),
    ("POST", re.compile(r"/2/dm_conversations/with/(?P<pid>\d+)/messages"), USER, _send_dm),
    ("GET", re.compile(r"/2/dm_conversations/with/(?P<pid>\d+)/dm_events"), USER, _dm_events),
    ("POST", re.compile(r"/2/media/upload"), USER, _upload_media),
    ("POST", re.compile(r"/1\.1/oauth/invalidate_token(\.json)?"), USER, _invalidate_token),
    ("POST", re.compile(r"/2/webhooks"), APP, _register_webhook),
    ("GET", re.compile(r"/2/webhooks"), APP, _list_webhooks),
    ("POST", re.compile(r"/2/account_activity/webhooks/(?P<wid>\d+)/subscriptions/all"), USER, _subscribe),
    (
        "DELETE",
        re.compile(r"/2/account_activity/webhooks/(?P<wid>\d+)/subscriptions/(?P<uid>\d+)/all"),
        APP,
        _unsubscribe,
    ),
    ("POST", re.compile(r"/_sandbox/users"), NONE, _c_users),
    ("POST", re.compile(r"/_sandbox/users/(?P<uid>\d+)/settings"), NONE, _c_user_settings),
    ("POST", re.compile(r"/_sandbox/tokens"), NONE, _c_tokens),
    ("POST", re.compile(r"/_sandbox/dm"), NONE, _c_dm),
    ("POST", re.compile(r"/_sandbox/follow"), NONE, _c_follow("follow")),
    ("POST", re.compile(r"/_sandbox/unfollow"), NONE, _c_follow("unfollow")),
    ("POST", re.compile(r"/_sandbox/read"), NONE, _c_read),
    ("POST", re.compile(r"/_sandbox/typing"), NONE, _c_typing),
    ("POST", re.compile(r"/_sandbox/revoke"), NONE, _c_revoke),
    ("GET", re.compile(r"/_sandbox/dms"), NONE, _c_dms),
    ("GET", re.compile(r"/_sandbox/deliveries"), NONE, _c_deliveries),
    ("GET", re.compile(r"/_sandbox/media"), NONE, _c_media),
    ("POST", re.compile(r"/_sandbox/media/expire"), NONE, _c_media_expire),
    ("POST", re.compile(r"/_sandbox/faults"), NONE, _c_faults),
    ("GET", re.compile(r"/_sandbox/faults"), NONE, _c_faults_list),
    ("DELETE", re.compile(r"/_sandbox/faults"), NONE, _c_faults_clear),
    ("POST", re.compile(r"/_sandbox/limits"), NONE, _c_limits),
    ("GET", re.compile(r"/_sandbox/usage"), NONE, _c_usage),
    ("POST", re.compile(r"/_sandbox/reset"), NONE, _c_reset),
    ("POST", re.compile(r"/_sandbox/duplicate"), NONE, _c_duplicate),
    ("GET", re.compile(r"/_sandbox/t\.co/(?P<code>[0-9A-Za-z]{10})"), NONE, _c_tco),
    ("POST", re.compile(r"/_sandbox/webhooks"), NONE, _c_webhooks),
]


def _route(method: str, path: str) -> tuple[str, Handler, re.Match[str]]:
    for route_method, pattern, auth, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            return auth, handler, match
    raise Problem(404, "Not Found Error", f"No route for {method} {path}")


class _RequestHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY a keep-alive client waits out the delayed ACK
    # (about 40 ms a request), as no real X front end makes it
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        try:
            self._handle(method)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault, usually)
            self.close_connection = True

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise Problem(413, "Payload Too Large", "The body is too large")
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        sandbox = self.server.sandbox
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        is_v1 = parts.path.startswith("/1.1/")
        try:
            body = self._read_body()
            auth, handler, match = _route(method, parts.path)
            call = Call(method, parts.path, parse_qs(parts.query), headers, body, match)
            if auth == NONE:
                status, result, extra = handler(sandbox, call)
                self._send(status, result, extra)
                return
            fault = sandbox.take_fault(method, parts.path)
            if fault and not fault.after_send:
                self._apply_fault(fault)
                return
            self._authenticate(call, auth)
            status, result, extra = handler(sandbox, call)
            if fault:  # the call took effect, and X answers an error anyway
                self._apply_fault(fault)
                return
            self._send(status, result, extra)
        except Problem as problem:
            headers_out = dict(problem.headers)
            if problem.status == 429 and "x-rate-limit-reset" not in headers_out:
                headers_out["x-rate-limit-reset"] = str(int(time.time()) + 900)
            self._send(problem.status, problem.body(v1=is_v1), headers_out)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:  # noqa: BLE001 - a sandbox bug answers 500, like a broken X would, and says why
            traceback.print_exc()
            self._send(500, Problem(500, "Internal Error", "Internal Error").body(v1=is_v1), {})

    def _authenticate(self, call: Call, auth: str) -> None:
        sandbox = self.server.sandbox
        authorization = call.headers.get("authorization", "")
        if auth == APP and authorization.startswith("Bearer "):
            if sandbox.bearer_token and authorization[7:] == sandbox.bearer_token:
                return
            raise Problem(401, "Unauthorized", "Unauthorized", code=89)
        host = call.headers.get("host", f"127.0.0.1:{self.server.server_port}")
        uri = f"http://{host}{self.path}"
        form = "application/x-www-form-urlencoded" in call.headers.get("content-type", "")
        token = self.server.verifier.verify(uri, call.method, call.body.decode() if form else "", call.headers)
        if token is None:
            raise Problem(401, "Unauthorized", "Unauthorized", code=89)
        call.token = token
        call.user = sandbox.user_of_token(token)

    def _apply_fault(self, fault: Any) -> None:
        if fault.mode == "timeout":
            time.sleep(fault.seconds)
            self._send(503, Problem(503, "Service Unavailable", "Service Unavailable").body(), {})
            return
        headers = {}
        if fault.status == 429:
            headers = {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0"}
            headers["x-rate-limit-reset"] = str(int(time.time() + fault.reset))
        titles = {403: "Forbidden", 429: "Too Many Requests", 401: "Unauthorized", 400: "Invalid Request"}
        code = fault.code or {403: 349, 429: 88, 401: 89}.get(fault.status)
        title = titles.get(fault.status, "Service Unavailable" if fault.status >= 500 else "Error")
        details = {349: "You cannot send messages to this user.", 226: "This request looks like it might be automated."}
        detail = details.get(code or 0, title)
        self._send(fault.status, Problem(fault.status, title, detail, code=code).body(), headers)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 5001, verbose: bool = False) -> None:
        super().__init__((host, port), _RequestHandler)
        self.sandbox = sandbox
        self.verbose = verbose
        self.verifier = OAuthVerifier(sandbox.consumer_key, sandbox.consumer_secret, sandbox.token_secret)
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, or gave up at its timeout) is X's everyday: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.sandbox.close()


def start_in_thread(port: int = 0, **sandbox_options: Any) -> SandboxServer:
    """Starts a sandbox on a background thread (port 0: any free port); `.url`, `.sandbox`, `.stop()`."""
    server = SandboxServer(Sandbox(**sandbox_options), port=port)
    server._thread = threading.Thread(target=server.serve_forever, name="xsandbox", daemon=True)
    server._thread.start()
    return server
