"""Fetching images that staff attach by URL, before they are uploaded to X. Bounded in time, size and type, and
refusing addresses inside the network (a URL must not make the service fetch its own internals)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings

from mktx.api.errors import InvalidInput

IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
TIMEOUT = (3.05, 10)


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str
    filename: str


def _is_internal(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False  # the request itself will fail and say so
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            return True
    return False


def fetch_image(url: str, field: str) -> FetchedImage:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, "must be an http(s) URL")
    if not settings.MKTX_ATTACHMENT_ALLOW_PRIVATE and _is_internal(parts.hostname):
        raise InvalidInput(field, "points inside the network; use a public URL")
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT, allow_redirects=False) as response:
            if response.status_code != 200:
                raise InvalidInput(field, f"fetching the image answered HTTP {response.status_code}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type not in IMAGE_TYPES:
                raise InvalidInput(field, f"is not a JPEG, PNG, GIF or WebP image ({content_type or 'no type'})")
            data = bytearray()
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise InvalidInput(field, f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    except requests.RequestException as exc:
        raise InvalidInput(field, f"the image could not be fetched: {type(exc).__name__}") from None
    if not data:
        raise InvalidInput(field, "the image is empty")
    return FetchedImage(bytes(data), content_type, f"attachment.{IMAGE_TYPES[content_type]}")
