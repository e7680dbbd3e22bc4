"""X wraps every URL in a DM as a t.co link: the text X shows holds `https://t.co/...`, and the DM's URL entities
say what each one stands for (`url`, `expanded_url`, `indices`). The service keeps DMs as they were written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
TRAILING = ".,;:!?)]}"


TCO = re.compile(r"https?://t\.co/\w+")


def expanded(text: str, urls: Iterable[Any] | None, *, drop: str = "") -> str:
    """`text` with each t.co link of `urls` (X's URL entities) put back as written, in one pass (a link written
    into another's place is not expanded again). `drop`: a t.co link X appended for an attachment (a DM's media),
    taken out with the space before it."""
    table = {
        str(entity["url"]): str(entity["expanded_url"])
        for entity in urls or []
        if isinstance(entity, dict) and entity.get("url") and entity.get("expanded_url")
    }
    if drop:
        text = re.sub(rf"\s*{re.escape(drop)}\s*$", "", text) if text.rstrip().endswith(drop) else text
    return TCO.sub(lambda found: table.get(found.group(0), found.group(0)), text)


def without_links(text: str) -> str:
    """The text with every link (written, or wrapped by X) as one mark: how a DM we sent is known again in X's DM
    event lookup, which answers the wrapped text without the entities to expand it."""
    return URL.sub(lambda found: "\x00" + found.group(0)[len(found.group(0).rstrip(TRAILING)) :], text)
