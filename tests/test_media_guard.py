"""The outbound address guard (mktx/egress.py) as image fetching uses it: one resolution, pinned connection, denied
ranges, wall-clock deadline, size cap, and one error text whatever the cause."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from contacts.media import CANNOT_FETCH, MAX_IMAGE_BYTES, fetch_image
from contacts.models import Message
from contacts.services.contacts import XProfile
from contacts.services.inbound import dm_record
from mktx import egress
from mktx.accounts.models import Account
from mktx.accounts.services import webhook_url
from mktx.api.errors import InvalidInput

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
OTHER_PNG = b"\x89PNG\r\n\x1a\n" + b"\xff" * 100
PUBLIC = "93.184.215.14"


class ImageServer:
    """A local HTTP server; records each request's path and Host header. `drip` routes send slowly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, body: bytes = PNG) -> None:
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Host", "")))
                with contextlib.suppress(OSError):  # the client gave up: what the deadline tests want
                    owner.answer(self, body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path
        if path == "/drip-headers.png":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(40):
                handler.wfile.write(b"X-Slow: 1\r\n")
                handler.wfile.flush()
                time.sleep(0.1)
            return
        routes = {
            "/ok.png": (200, "image/png", body),
            "/page.html": (200, "text/html", b"<html>admin console</html>"),
            "/empty.png": (200, "image/png", b""),
            "/huge.png": (200, "image/png", b"\x00" * (MAX_IMAGE_BYTES + 1)),
            "/huge-unsized.png": (200, "image/png", b"\x00" * (MAX_IMAGE_BYTES + 1)),
            "/drip.png": (200, "image/png", PNG[:40]),
            "/drip-unsized.png": (200, "image/png", PNG[:40]),
            "/moved.png": (302, "text/plain", b""),
        }
        status, kind, payload = routes.get(path, (404, "text/plain", b"missing"))
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        if path == "/moved.png":
            handler.send_header("Location", "http://127.0.0.1:1/ok.png")
        if "unsized" not in path:
            handler.send_header("Content-Length", str(len(payload)))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if path.startswith("/drip"):
            for byte in payload:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)
        else:
            handler.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def images():
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def resolver(monkeypatch):
    """`images.test` answers `answers[0]` on the first lookup and `answers[1]` on any later one (DNS rebinding)."""
    real = socket.getaddrinfo
    state: dict[str, list[str]] = {"answers": [PUBLIC, "127.0.0.1"], "lookups": []}

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "images.test":
            return real(host, port, *args, **kwargs)
        state["lookups"].append(host)
        answer = state["answers"][0 if len(state["lookups"]) == 1 else 1]
        return real(answer, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


@pytest.fixture
def connections(monkeypatch):
    """Where the guard connects; connections to anything but loopback are refused (tests stay off the network)."""
    made: list[str] = []
    real = egress._open_socket

    def open_socket(address, port, *args):
        made.append(address)
        if not ipaddress.ip_address(address).is_loopback:
            raise ConnectionRefusedError(f"test: no route to {address}")
        return real(address, port, *args)

    monkeypatch.setattr(egress, "_open_socket", open_socket)
    return made


def refusal(url: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        fetch_image(url, "attachments[0].url")
    assert caught.value.details["field"] == "attachments[0].url"
    return caught.value.details["reason"]


# --- one resolution, pinned connection ------------------------------------------------------------------------------


def test_it_connects_to_the_address_it_checked_when_the_name_rebinds(images, resolver, connections, settings):
    # given a name that answers a public address to the check and loopback to any later lookup
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    # when
    reason = refusal(f"http://images.test:{images.port}/ok.png")
    # then the one connection went to the checked public address, and the loopback server saw nothing
    assert connections == [PUBLIC]
    assert resolver["lookups"] == ["images.test"]
    assert images.requests == []
    assert reason == CANNOT_FETCH


def test_allowing_private_addresses_keeps_the_connection_pinned(resolver, connections, settings):
    # given two servers on one port, the name answering the first, then the second
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    first = ImageServer("127.0.0.1")
    second = ImageServer("127.0.0.2", first.port, body=OTHER_PNG)
    resolver["answers"] = ["127.0.0.1", "127.0.0.2"]
    try:
        # when
        image = fetch_image(f"http://images.test:{first.port}/ok.png", "attachments[0].url")
    finally:
        first.close()
        second.close()
    # then the image came from the first answer, asked for by its name
    assert image.data == PNG
    assert connections == ["127.0.0.1"]
    assert first.requests == [("/ok.png", f"images.test:{first.port}")]
    assert second.requests == []


def test_a_name_with_any_internal_answer_is_refused_before_connecting(monkeypatch, connections, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    monkeypatch.setattr(egress, "resolve", lambda host, port: [PUBLIC, "10.0.0.7"])
    assert refusal("http://images.test/ok.png") == CANNOT_FETCH
    assert connections == []


@pytest.mark.parametrize("url", ["http://[::1/ok.png", "http://images.test:99999/ok.png", "file:///etc/passwd"])
def test_a_malformed_url_is_refused_with_the_same_text(url, connections):
    assert refusal(url) == CANNOT_FETCH
    assert connections == []


def test_a_path_with_spaces_or_letters_beyond_ascii_is_sent_percent_encoded(images, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    assert refusal(images.url + "/summer sale/é.png") == CANNOT_FETCH  # a 404, not a crash
    assert images.requests[0][0] == "/summer%20sale/%C3%A9.png"


def test_redirects_are_not_followed(images, connections, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    assert refusal(images.url + "/moved.png") == CANNOT_FETCH
    assert connections == ["127.0.0.1"]


def _certificate(tmp_path, name: str) -> tuple[str, str, str]:
    """A CA and a leaf certificate for `name`, as PEM files: (ca, cert, key)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def build(subject, issuer, public_key, signing_key, *, ca: bool, san: str | None = None):
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key.public_key(), ca_key, ca=True)
    leaf = build(name, "test CA", leaf_key.public_key(), ca_key, ca=False, san=name)
    paths = [str(tmp_path / f) for f in ("ca.pem", "cert.pem", "key.pem")]
    for path, data in zip(
        paths,
        [
            ca.public_bytes(serialization.Encoding.PEM),
            leaf.public_bytes(serialization.Encoding.PEM),
            leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ],
        strict=True,
    ):
        with open(path, "wb") as file:
            file.write(data)
    return paths[0], paths[1], paths[2]


@pytest.fixture
def tls_images(tmp_path, monkeypatch, resolver, settings):
    """An HTTPS image server at images.test (pinned to 127.0.0.1); `serve(name)` gives it a certificate for `name`
    and trusts its CA. Records the SNI name each handshake asked for."""
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    resolver["answers"] = ["127.0.0.1", "127.0.0.2"]
    servers: list[ImageServer] = []

    def serve(name: str) -> tuple[ImageServer, list[str | None]]:
        ca, cert, key = _certificate(tmp_path, name)
        monkeypatch.setattr(egress, "CA_CERTS", ca)
        server = ImageServer()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        names: list[str | None] = []
        context.sni_callback = lambda sock, sni, ctx: names.append(sni)
        server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
        servers.append(server)
        return server, names

    yield serve
    for server in servers:
        server.close()


def test_https_is_verified_for_the_hostname_over_the_pinned_address(tls_images, connections):
    server, names = tls_images("images.test")
    image = fetch_image(f"https://images.test:{server.port}/ok.png", "attachments[0].url")
    assert image.data == PNG
    assert connections == ["127.0.0.1"]
    assert names == ["images.test"]
    assert server.requests == [("/ok.png", f"images.test:{server.port}")]


def test_https_with_a_certificate_for_another_name_is_refused(tls_images, connections):
    server, names = tls_images("other.test")
    assert refusal(f"https://images.test:{server.port}/ok.png") == CANNOT_FETCH
    assert names == ["images.test"]
    assert server.requests == []


# --- the address rule -----------------------------------------------------------------------------------------------

DENIED = [
    "127.0.0.1",  # loopback
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # link-local: cloud metadata
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "0.1.2.3",
    "192.0.0.8",
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",  # unique local
    "fec0::1",  # site-local (deprecated, not global)
    "ff02::1",  # multicast
    "ff0e::1",  # global-scope multicast
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:100.64.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:6440:1::1",  # 6to4 of 100.64.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:808:808::1",  # 6to4 of a public address: still reaches whatever our own 6to4 gateway relays to
    "64:ff9b:1::8.8.8.8",  # local-use NAT64: its operator decides where the IPv4 address sits
    "64:ff9b:1:7f00:0:100:808:808",
    "2001::1",  # Teredo
    "2001:db8::1",  # documentation
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", DENIED)
def test_each_denied_range_is_refused_before_connecting(address, monkeypatch, connections, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    monkeypatch.setattr(egress, "resolve", lambda host, port: [address])
    assert not egress.address_allowed(ipaddress.ip_address(address))
    assert refusal("https://images.test/ok.png") == CANNOT_FETCH
    assert connections == []


@pytest.mark.parametrize("address", ["127.0.0.1", "[::ffff:127.0.0.1]", "[2002:7f00:1::1]", "2130706433"])
def test_an_internal_address_written_in_the_url_is_refused(address, connections, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = False
    assert refusal(f"http://{address}/ok.png") == CANNOT_FETCH
    assert connections == []


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert egress.address_allowed(ipaddress.ip_address(address))


# --- deadline and size ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip.png", "/drip-unsized.png", "/drip-headers.png"])
def test_a_dripping_server_is_cut_off_at_the_deadline(images, path, settings):
    # given a server that sends a byte every 0.1 s (4 s in all) and a deadline of 0.5 s
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    settings.MKTX_MEDIA_FETCH_DEADLINE = 0.5
    started = time.monotonic()
    # when
    reason = refusal(images.url + path)
    # then
    assert time.monotonic() - started < 1.5
    assert reason == CANNOT_FETCH
    assert images.requests and images.requests[0][0] == path


def test_a_slow_name_lookup_counts_against_the_deadline(monkeypatch, connections, settings):
    settings.MKTX_MEDIA_FETCH_DEADLINE = 0.3

    def slow(host: str, port: int) -> list[str]:
        time.sleep(2)
        return [PUBLIC]

    monkeypatch.setattr(egress, "resolve", slow)
    started = time.monotonic()
    assert refusal("http://images.test/ok.png") == CANNOT_FETCH
    assert time.monotonic() - started < 1
    assert connections == []


def test_a_body_over_the_cap_without_a_declared_length_is_refused(images, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    assert refusal(images.url + "/huge-unsized.png") == CANNOT_FETCH


def test_a_fetch_within_the_deadline_succeeds(images, settings):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = True
    settings.MKTX_MEDIA_FETCH_DEADLINE = 2
    image = fetch_image(images.url + "/ok.png", "card.imageUrl")
    assert (image.data, image.content_type, image.filename) == (PNG, "image/png", "attachment.png")


# --- one error text through the API ---------------------------------------------------------------------------------


@pytest.fixture
def john(api, sandbox):
    sandbox.register_webhook(webhook_url())
    shop = sandbox.user("goodgo_shop")
    response = api.post(
        "/api/v1/mkt-x/accounts", {k: shop[k] for k in ("oauthToken", "oauthTokenSecret")}, format="json"
    )
    assert response.status_code == 200
    account = Account.objects.get(pk=response.json()["data"]["id"])
    user = sandbox.user("customer_john", "John Doe")
    message = dm_record(
        account=account,
        x_event_id="900000000000000001",
        sender_id=user["id"],
        recipient_id=shop["id"],
        text="Hi",
        sent_at=timezone.now(),
        profiles={user["id"]: XProfile(id=user["id"], username="customer_john", name="John Doe")},
    )
    assert message is not None
    return {"shop": shop, "conversation": message.conversation}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("private", "path"),
    [
        (False, "/ok.png"),  # inside the network
        (True, "/missing.png"),  # a 404
        (True, "/page.html"),  # not an image
        (True, "/empty.png"),
        (True, "/huge.png"),
        (True, "/drip.png"),  # past the deadline
        (True, "closed-port"),  # connection refused
    ],
)
def test_the_api_answers_one_text_whatever_kept_the_image_from_being_fetched(
    api, sandbox, john, images, settings, private, path
):
    settings.MKTX_ATTACHMENT_ALLOW_PRIVATE = private
    settings.MKTX_MEDIA_FETCH_DEADLINE = 0.5
    url = "http://127.0.0.1:9/ok.png" if path == "closed-port" else images.url + path
    response = api.post(
        f"/api/v1/mkt-x/conversations/{john['conversation'].id}/messages",
        {"content": "x", "attachments": [{"type": "image", "url": url}]},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert (body["details"]["field"], body["details"]["reason"]) == ("attachments[0].url", CANNOT_FETCH)
    assert sandbox.dms(senderId=john["shop"]["id"]) == []
    assert not Message.objects.filter(direction="outbound").exists()
