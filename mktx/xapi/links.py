"""X wraps every URL in a DM as a t.co link: the text X shows holds `https://t.co/...`, and the DM's URL entities
say what each one stands for (`url`, `expanded_url`, `indices`). The service keeps DMs as they were written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
TRAILING = ".,;:!?)]}"


def expanded(text: str, urls: Iterable[Any] | None) -> str:
    """`text` with each t.co link of `urls` (X's URL entities) put back as written."""
    for entity in urls or []:
        if isinstance(entity, dict) and entity.get("url") and entity.get("expanded_url"):
            text = text.replace(str(entity["url"]), str(entity["expanded_url"]))
    return text


def without_links(text: str) -> str:
    """The text with every link (written, or wrapped by X) as one mark: how a DM we sent is known again in X's DM
    event lookup, which answers the wrapped text without the entities to expand it."""
    return URL.sub(lambda found: "\x00" + found.group(0)[len(found.group(0).rstrip(TRAILING)) :], text)
