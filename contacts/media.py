"""Fetching images that staff attach by URL (and card images), before they are uploaded to X: through the outbound
address guard (mktx/egress.py), bounded in time, size and type.

Whatever goes wrong, the client reads one text: a reason that said "connection refused", "HTTP 404" or "text/html"
would let any agent map the network behind the service. The real reason is logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mktx.api.errors import InvalidInput
from mktx.egress import EgressFailed, guarded_request

logger = logging.getLogger("mktx.contacts")

IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
CANNOT_FETCH = "the image could not be fetched"


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str
    filename: str


def fetch_image(url: str, field: str) -> FetchedImage:
    """The image at `url`, or InvalidInput(field, CANNOT_FETCH)."""
    try:
        response = guarded_request("GET", url, max_bytes=MAX_IMAGE_BYTES, headers={"Accept": ", ".join(IMAGE_TYPES)})
    except EgressFailed as exc:
        return _refuse(url, field, exc.reason)
    content_type = response.header("Content-Type").split(";")[0].strip().lower()
    if response.status != 200:
        return _refuse(url, field, f"HTTP {response.status} from {response.address}")
    if content_type not in IMAGE_TYPES:
        return _refuse(url, field, f"not an image type: {content_type or 'none'}")
    if not response.body:
        return _refuse(url, field, "empty body")
    return FetchedImage(response.body, content_type, f"attachment.{IMAGE_TYPES[content_type]}")


def _refuse(url: str, field: str, reason: str) -> FetchedImage:
    logger.info("image %s refused: %s", url[:300], reason)
    raise InvalidInput(field, CANNOT_FETCH)
