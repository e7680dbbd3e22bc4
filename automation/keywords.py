"""Keyword matching of `message_received` triggers and `wait_for_reply` nodes: the one definition both use, and the
checks a regex keyword passes when a flow is saved.

Regexes run on the `regex` module (the same syntax as `re`) for its time bound: a search stops after
MATCH_TIMEOUT and counts as no match, so a pattern the static check lets through cannot stall a worker on a
customer's DM. Only a DM's first MAX_MATCH_TEXT characters are read."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from functools import lru_cache
from typing import Any

import regex

logger = logging.getLogger("mktx.automation")

MAX_MATCH_TEXT = 4_000  # a DM's first characters are all keyword_match reads
MATCH_TIMEOUT = 0.05  # seconds a trigger's (or a node's) regex keywords may search one DM, together


def keyword_match(text: str, keywords: list[str], match: str) -> bool:
    """Whether a DM's text matches one of the keywords, case-insensitive (no keywords: any text matches). `exact`
    compares the whole stripped text, `contains` and `startsWith` a substring and a prefix, `regex` a search
    bounded in time (MATCH_TIMEOUT each: a pattern that takes longer does not match)."""
    if not keywords:
        return True
    text = unicodedata.normalize("NFC", text[:MAX_MATCH_TEXT])
    if match == "regex":
        deadline = time.monotonic() + MATCH_TIMEOUT  # for all of the keywords together
        return any(_search(pattern, text, deadline) for pattern in map(_compiled, keywords) if pattern is not None)
    folded = text.casefold().strip()
    for keyword in keywords:
        word = unicodedata.normalize("NFC", keyword).casefold().strip()
        if not word:
            continue
        if folded == word if match == "exact" else folded.startswith(word) if match == "startsWith" else word in folded:
            return True
    return False


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.V0)
    except Exception:  # noqa: BLE001  # the regex module raises more than regex.error on odd flags ((?V1) ...)
        return None


def _search(pattern: Any, text: str, deadline: float) -> bool:
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    try:
        return pattern.search(text, timeout=left) is not None
    except TimeoutError:
        logger.warning("the keyword regex %r took over %ss on a DM: no match", pattern.pattern, MATCH_TIMEOUT)
        return False


# recursion and backreferences: nothing a keyword needs, and slow on any input
_REFUSED = re.compile(r"\\(?:[1-9]|g)|\(\?(?:R|[0-9+]|&|P>|P=|V)")


def regex_problem(pattern: str) -> str | None:
    """Why a regex keyword is refused (None: it is fine)."""
    if _REFUSED.search(pattern):
        return "uses a backreference, recursion or a version flag: keywords take plain patterns"
    try:
        regex.compile(pattern, regex.IGNORECASE | regex.V0)
    except Exception as error:  # noqa: BLE001  # not only regex.error: (?V1) raises a KeyError
        return f"is not a valid regular expression ({error})"
    if nested_repeat(pattern):
        return "repeats a group holding a repeat or a choice, as (a+)+ or (a|a)*: it could take exponential time"
    return None


_QUANTIFIER = re.compile(r"[*+?]|\{(\d*)(,?)(\d*)\}")


def _repeats(quantifier: re.Match[str] | None) -> bool:
    """Whether a quantifier allows more than one (`*`, `+`, `{2,}`; not `?` nor `{1}`)."""
    if quantifier is None or quantifier[0] == "?" or (quantifier[0][0] == "{" and not quantifier[0].strip("{,}")):
        return False
    high = quantifier[3] if quantifier[2] else quantifier[1]
    return quantifier[0] in ("*", "+") or not high or int(high) > 1


def nested_repeat(pattern: str) -> bool:
    """A static guard against catastrophic backtracking: a group repeated (`*`, `+`, `{2,}`) that holds a quantifier
    or a `|` at any depth: `(a+)+`, `(a*)*`, `(a|a)*`; some safe ones too (`(\\d+,)*`, `(hi|hello)+`)."""
    text = re.sub(r"\[\^?\]?[^\]]*\]", "x", re.sub(r"\\.", "x", pattern))  # escapes, then classes: one character
    text = re.sub(r"\(\?(?:[aiLmsux]+|#[^)]*|P=\w+)\)", "", text)  # inline flags, comments, named backreferences
    text = re.sub(r"\(\?(?:[:>=!]|<[=!]|P?<\w+>|[aiLmsux]*(?:-[imsx]+)?:)", "(", text)  # group openers
    while group := re.search(r"\(([^()]*)\)", text):  # the innermost groups first, each replaced by a character
        risky = bool(_QUANTIFIER.search(group[1])) or "|" in group[1]
        after = _QUANTIFIER.match(text, group.end())
        if risky and _repeats(after):
            return True
        text = text[: group.start()] + ("x+" if risky or after else "x") + text[group.end() :]
    return False
