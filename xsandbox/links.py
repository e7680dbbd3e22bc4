"""X's link wrapping: every URL in a DM's text becomes a `https://t.co/<10 characters>` link, and the DM carries
an entity per link with the `url` (t.co), `expanded_url` (as written), `display_url` (as X shows it) and `indices`
(code points of the wrapped text, end excluded). The webhook payloads, the DM event lookups and the echo all carry
the wrapped text; `GET /_sandbox/dms` shows both."""

from __future__ import annotations

import hashlib
import re
from typing import Any

URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
TRAILING = ".,;:!?)]}"  # punctuation after a link is the sentence's, not the link's (as X reads it)
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DISPLAY_MAX = 26


def _code(seed: str) -> str:
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    out = ""
    for _ in range(10):
        number, digit = divmod(number, len(ALPHABET))
        out += ALPHABET[digit]
    return out


def _display(url: str) -> str:
    shown = re.sub(r"^https?://(www\.)?", "", url, flags=re.IGNORECASE)
    return shown if len(shown) <= DISPLAY_MAX else shown[: DISPLAY_MAX - 1] + "\u2026"


def wrap(text: str, seed: str) -> tuple[str, list[dict[str, Any]]]:
    """The text as X shows it, and its URL entities. `seed` (the DM's id) makes each t.co code its own."""
    out, entities, last = [], [], 0
    for number, found in enumerate(URL.finditer(text)):
        url = found.group(0).rstrip(TRAILING)
        start, end = found.start(), found.start() + len(url)
        out.append(text[last:start])
        wrapped = f"https://t.co/{_code(f'{seed}:{number}:{url}')}"
        at = sum(len(part) for part in out)
        out.append(wrapped)
        entities.append(
            {
                "url": wrapped,
                "expanded_url": url,
                "display_url": _display(url),
                "indices": [at, at + len(wrapped)],
            }
        )
        last = end
    out.append(text[last:])
    return "".join(out), entities


def with_media_link(text: str, urls: list[dict[str, Any]], dm_id: str) -> tuple[str, list[dict[str, Any]]]:
    """A DM with media, as X shows it: a t.co link to the media appended to the text, with its entity."""
    wrapped = f"https://t.co/{_code(f'{dm_id}:media')}"
    shown = f"{text} {wrapped}" if text else wrapped
    at = len(shown) - len(wrapped)
    entity = {
        "url": wrapped,
        "expanded_url": f"https://twitter.com/messages/media/{dm_id}",
        "display_url": f"pic.twitter.com/{wrapped.rsplit('/', 1)[1]}",
        "indices": [at, at + len(wrapped)],
        "media": True,  # the sandbox's own mark, taken out of what X's surfaces show
    }
    return shown, [*urls, entity]


def shown(urls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The URL entities as X shows them (without the sandbox's own marks)."""
    return [{k: v for k, v in u.items() if k != "media"} for u in urls]


def resolve(code: str, dms: list[Any]) -> str | None:
    """Where a t.co code leads (the sandbox answering for t.co)."""
    wrapped = f"https://t.co/{code}"
    for dm in reversed(dms):
        for entity in dm.urls:
            if entity["url"] == wrapped:
                return str(entity["expanded_url"])
    return None
