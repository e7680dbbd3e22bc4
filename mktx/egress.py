"""The outbound address guard: HTTP to URLs that merchants or their agents supply (attachment images, card images,
later the chatbot's order lookup). Such a URL must not make the service reach its own network.

The host is resolved once, every answer must be a globally routable address, and the connection goes to the address
that was checked: the socket is opened to it while Host, TLS SNI and certificate verification use the hostname, so a
DNS answer that changes between the check and the connect (rebinding) is never used. Redirects are not followed
(each hop would need the same check); a 3xx is returned like any other status. Every request has a wall-clock
deadline besides its connect/read timeouts (a server dripping a byte at a time must not hold a worker) and a body
size cap. Failures raise `EgressFailed`, whose reason is for logs only: answers to clients must not describe what
sits behind the URL (an open port, a service's status or content type)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

import certifi
from django.conf import settings
from requests.utils import requote_uri
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
CA_CERTS = certifi.where()  # the same trust store as `requests`; tests point it at their own CA

# Not globally routable, or routable only to a network of our own, beyond what `is_global` already says.
_DENIED_V4 = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24"))
# 6to4 (2002::/16) reaches whatever IPv4 network a gateway of ours relays to, and the local-use NAT64 prefix
# (64:ff9b:1::/48) embeds its IPv4 address wherever its operator chose: neither can be checked, both are refused.
_DENIED_V6 = tuple(ipaddress.ip_network(n) for n in ("2002::/16", "64:ff9b:1::/48"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the IPv4 address is the last 32 bits


class EgressFailed(Exception):
    """The request was refused or did not complete. `reason` goes to logs, never to the caller's client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EgressResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    address: str  # the address the connection went to

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` has. The one name lookup the guard makes: what it checks is what it connects to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def address_allowed(address: IPAddress) -> bool:
    """A globally routable unicast address that does not embed (or translate to) one that is not."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _DENIED_V6):
            return False
        embedded = _embedded_v4(address)
        if embedded is not None:
            return address_allowed(embedded)
        if address.is_site_local or address.teredo is not None:
            return False
    elif any(address in network for network in _DENIED_V4):
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or well-known NAT64 address reaches: the one that must be checked."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def pick_address(host: str, port: int, *, allow_private: bool, within: float = CONNECT_TIMEOUT) -> str:
    """The address to connect to: the first answer, provided every answer is allowed (a name that also points
    inside is refused whole). `allow_private` relaxes only the address rule, never the pinning. The lookup may take
    `within` seconds."""
    try:
        answers = [ipaddress.ip_address(host)] if _is_literal(host) else _parse(_resolve_within(host, port, within))
    except (OSError, UnicodeError, ValueError) as exc:
        raise EgressFailed(f"cannot resolve {host!r}: {exc}") from None
    if not answers:
        raise EgressFailed(f"{host!r} has no address")
    denied = [str(a) for a in answers if not address_allowed(a)]
    if denied and not allow_private:
        raise EgressFailed(f"{host!r} resolves to a non-public address {denied[0]}")
    return str(answers[0])


def _resolve_within(host: str, port: int, seconds: float) -> list[str]:
    # getaddrinfo cannot be interrupted, so it runs in a thread the request stops waiting for at the deadline (the
    # thread ends when the system resolver gives up).
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(resolve(host, port))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=lookup, name="egress-resolve", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise TimeoutError(f"resolving took more than {seconds:g} s")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return list(outcome[0])


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse(addresses: list[str]) -> list[IPAddress]:
    # A scope id (fe80::1%eth0) belongs to link-local addresses, which are denied anyway.
    return [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]


class _Deadline:
    """Shuts the request's sockets down when the wall-clock deadline passes, which ends any read blocked on them
    (a read timeout alone restarts with every byte that arrives)."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same socket: TLS wrapping detaches the original object, and shutdown acts
        # on the socket whichever descriptor names it.
        with self._lock:
            self._watched.append(sock.dup())
            if self.expired:
                self._shut(self._watched[-1])

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._watched:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by its side
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def _open_socket(address: str, port: int, timeout: Any, source_address: Any, socket_options: Any) -> socket.socket:
    """The TCP connection to the checked address (a seam tests use to see where the guard connects)."""
    return create_connection((address, port), timeout, source_address=source_address, socket_options=socket_options)


class _Pinned:
    """What the pinned connections share: the checked address and the request's deadline."""

    def __init__(self, address: str, deadline: _Deadline) -> None:
        self.address = address
        self.deadline = deadline

    def connect(self, conn: HTTPConnection) -> socket.socket:
        timeout = self.deadline.remaining()
        if isinstance(conn.timeout, int | float):
            timeout = min(float(conn.timeout), timeout)
        sock = _open_socket(self.address, conn.port, timeout, conn.source_address, conn.socket_options)
        self.deadline.watch(sock)
        return sock


class _PinnedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, pinned: _Pinned, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pinned = pinned

    def _new_conn(self) -> socket.socket:
        return self._pinned.connect(self)


class _PinnedHTTPSConnection(HTTPSConnection):
    # urllib3 wraps the socket `_new_conn` returns with SNI and hostname verification for `self.host`, the name.
    def __init__(self, *args: Any, pinned: _Pinned, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pinned = pinned

    def _new_conn(self) -> socket.socket:
        return self._pinned.connect(self)


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def guarded_request(
    method: str,
    url: str,
    *,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    deadline_seconds: float | None = None,
    allow_private: bool | None = None,
) -> EgressResponse:
    """One HTTP request to a URL someone outside supplied, through the guard; the whole (capped) response.

    `deadline_seconds` defaults to settings.MKTX_MEDIA_FETCH_DEADLINE and `allow_private` to
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE (local development and tests serve from 127.0.0.1)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = (parts.hostname or "").encode("idna").decode("ascii")  # one spelling for DNS, Host and SNI
    except (ValueError, UnicodeError):
        raise EgressFailed("not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise EgressFailed("not an http(s) URL")
    if allow_private is None:
        allow_private = settings.MKTX_ATTACHMENT_ALLOW_PRIVATE
    seconds = settings.MKTX_MEDIA_FETCH_DEADLINE if deadline_seconds is None else deadline_seconds
    deadline = _Deadline(seconds)
    try:
        address = pick_address(host, port, allow_private=allow_private, within=deadline.remaining())
        pool = _pool(parts.scheme, host, port, _Pinned(address, deadline), deadline)
        try:
            status, response_headers, data = _send(pool, method, parts, headers, body, max_bytes)
        finally:
            pool.close()
        if deadline.expired:
            raise EgressFailed(f"the deadline of {seconds:g} s passed")
        return EgressResponse(status, response_headers, data, address)
    except (HTTPError, HTTPException, OSError, ValueError) as exc:  # ValueError: what http.client says of a bad URL
        reason = f"the deadline of {seconds:g} s passed" if deadline.expired else f"{type(exc).__name__}: {exc}"
        raise EgressFailed(reason) from None
    finally:
        deadline.close()


def _pool(scheme: str, host: str, port: int, pinned: _Pinned, deadline: _Deadline) -> HTTPConnectionPool:
    timeout = Timeout(connect=min(CONNECT_TIMEOUT, deadline.remaining()), read=min(READ_TIMEOUT, deadline.remaining()))
    common: dict[str, Any] = {"timeout": timeout, "retries": False, "maxsize": 1, "pinned": pinned}
    if scheme == "https":
        return _PinnedHTTPSPool(host, port, cert_reqs="CERT_REQUIRED", ca_certs=CA_CERTS, **common)
    return _PinnedHTTPPool(host, port, **common)


def _send(
    pool: HTTPConnectionPool,
    method: str,
    parts: Any,
    headers: Mapping[str, str] | None,
    body: bytes | None,
    max_bytes: int,
) -> tuple[int, Mapping[str, str], bytes]:
    # Percent-encoded as requests would (a space or non-ASCII letter is sent, not refused by http.client).
    path = requote_uri((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    response = pool.urlopen(
        method,
        path,
        body=body,
        headers=sent,
        redirect=False,
        retries=False,
        preload_content=False,
        assert_same_host=False,
    )
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise EgressFailed(f"the response declares {declared} bytes, more than {max_bytes}")
        data = bytearray()
        while chunk := response.read(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                raise EgressFailed(f"the response is larger than {max_bytes} bytes")
        return response.status, response.headers, bytes(data)
    finally:
        response.release_conn()
