"""The API's JSON parser: DRF's, plus the limits every endpoint needs before a value reaches a view or SQL.

- nesting deeper than MAX_DEPTH is refused before parsing (the C parser recurses: 100 000 brackets raise
  RecursionError, a 500, on the unauthenticated login);
- a NUL (`\\u0000`) in any string or key is refused: PostgreSQL stores NUL in neither text nor jsonb;
- integers outside 64 bits and numbers too large for a double (`1e999`) are refused: no column holds them.

Each is a 400 VALIDATION_ERROR naming the field as the client spelled it (`options[0].label`).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.utils.json import strict_constant

from mktx.api.errors import InvalidInput

MAX_DEPTH = 64
INT_BITS = 64
_INT_MAX = 2 ** (INT_BITS - 1) - 1
# a JSON string (escapes included) or one structural character: enough to measure nesting outside strings. The
# closing quote is optional and the repetitions possessive, so an unterminated string matches to the end at once:
# a required quote made every later `"` of such a body scan to its end again (quadratic: 17 s for 64 KB).
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}:]')
# RFC 8259: JSON exchanged between systems is UTF-8; its UTF-16/32 forms are harmless. Any other codec Python knows
# (rot13, zlib, ...) is refused: some are not text at all, and zlib would inflate a small body in memory.
JSON_ENCODINGS = frozenset(
    {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
    | {"ascii", "iso8859-1", "cp1252"}  # what old clients still label their (ASCII) JSON with
)


def _key(quoted: str) -> str:
    try:
        return str(json.loads(quoted))
    except ValueError:
        return quoted.strip('"')


def too_deep(text: str) -> str | None:
    """The top-level field that nests deeper than MAX_DEPTH (`body` when the top is not an object), or None."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # cheap bound: most bodies never get scanned
        return None
    depth, top_is_object, last_string, field = 0, False, "", "body"
    for match in _TOKENS.finditer(text):
        piece = match.group()
        if piece in "[{":
            if depth == 0:
                top_is_object = piece == "{"
            depth += 1
            if depth > MAX_DEPTH:
                return field if top_is_object else "body"
        elif piece in "]}":
            depth -= 1
        elif piece == ":":
            if depth == 1:
                field = _key(last_string)
        else:
            last_string = piece
    return None


def _path(parent: str, step: str | int) -> str:
    if isinstance(step, int):
        return f"{parent}[{step}]"
    return f"{parent}.{step}" if parent else step


def find_refused(value: Any) -> tuple[str, str] | None:
    """(path, reason) of the first string holding a NUL or number out of range, walking without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                child_path = _path(path, key)
                if "\x00" in key:
                    return child_path, "a key must not contain a NUL character"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((_path(path, index), child) for index, child in reversed(list(enumerate(item))))
        elif isinstance(item, str) and "\x00" in item:
            return path or "body", "must not contain a NUL character"
        elif isinstance(item, int) and not isinstance(item, bool) and not -_INT_MAX - 1 <= item <= _INT_MAX:
            return path or "body", f"integers must fit in {INT_BITS} bits"
        elif isinstance(item, float) and not math.isfinite(item):
            return path or "body", "numbers must be finite"
    return None


def loads_checked(text: str) -> Any:
    """`json.loads` within the limits above; InvalidInput naming the field, ValueError for malformed JSON."""
    deep = too_deep(text)
    if deep is not None:
        raise InvalidInput(deep, f"JSON nests at most {MAX_DEPTH} levels deep")
    suspect = "\\u0000" in text

    def parse_int(digits: str) -> int:
        nonlocal suspect
        # int() refuses more than 4300 digits with a ValueError: a number that long is only "beyond 64 bits"
        number = int(digits) if len(digits) <= 40 else (-(2**64) if digits.startswith("-") else 2**64)
        suspect = suspect or len(digits) > 18
        return number

    def parse_float(digits: str) -> float:
        nonlocal suspect
        number = float(digits)
        suspect = suspect or not math.isfinite(number)
        return number

    try:
        data = json.loads(text, parse_constant=strict_constant, parse_int=parse_int, parse_float=parse_float)
    except RecursionError:  # not reachable below MAX_DEPTH; kept so that no body can ever answer a 500
        raise InvalidInput("body", f"JSON nests at most {MAX_DEPTH} levels deep") from None
    if suspect:  # only then walk the parsed value: most bodies have neither
        refused = find_refused(data)
        if refused is not None:
            raise InvalidInput(*refused)
    return data


class JSONParser(DRFJSONParser):
    """DRF's JSON parser with the limits of `loads_checked` (registered in REST_FRAMEWORK for every view)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            codec = ""
        if codec not in JSON_ENCODINGS:
            raise InvalidInput("Content-Type", "JSON is read as UTF-8 (or UTF-16/32): leave out the charset")
        try:
            text = codecs.getreader(codec)(stream).read()
            return loads_checked(text)
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
