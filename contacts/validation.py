"""Rules for tags and attributes, shared by the API, the admin and imports."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from mktx.api.errors import InvalidInput

TAG_MAX_LENGTH = 50
TAG_PATTERN = re.compile(r"[\w-]+")  # letters of any script, digits, underscore, hyphen
MAX_TAGS_PER_REQUEST = 20
ATTRIBUTE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_STRING = 1000
MAX_ATTRIBUTES_BYTES = 16 * 1024


def normalize_tag(raw: Any, field: str) -> str:
    if not isinstance(raw, str):
        raise InvalidInput(field, "a tag is a string")
    name = raw.strip().casefold()
    if not name or len(name) > TAG_MAX_LENGTH:
        raise InvalidInput(field, f"a tag has 1 to {TAG_MAX_LENGTH} characters")
    if not TAG_PATTERN.fullmatch(name):
        raise InvalidInput(field, "a tag holds only letters, digits, '_' and '-'")
    return name


def normalize_tags(raw: Any, field: str = "tags") -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(field, "must be a non-empty list of tags")
    if len(raw) > MAX_TAGS_PER_REQUEST:
        raise InvalidInput(field, f"at most {MAX_TAGS_PER_REQUEST} tags at a time")
    return list(dict.fromkeys(normalize_tag(item, f"{field}[{i}]") for i, item in enumerate(raw)))


def _check_value(value: Any, field: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise InvalidInput(field, "numbers must be within +/- 2^53")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(field, "numbers must be finite")
        return
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_STRING:
            raise InvalidInput(field, f"strings have at most {MAX_ATTRIBUTE_STRING} characters")
        if "\x00" in value:  # PostgreSQL's jsonb holds no NUL; the admin and imports come here without the parser
            raise InvalidInput(field, "must not contain a NUL character")
        return
    raise InvalidInput(field, "values are strings, numbers, booleans or ISO dates (as strings); not lists or objects")


def validate_attribute_changes(raw: Any, field: str = "attributes") -> dict[str, Any]:
    """A dict of changes: each key valid, each value a scalar or None (None deletes the key)."""
    if not isinstance(raw, dict):
        raise InvalidInput(field, "must be an object of key: value")
    for key, value in raw.items():
        if not isinstance(key, str) or not ATTRIBUTE_KEY.fullmatch(key):
            raise InvalidInput(
                f"{field}.{key}", "keys start with a letter and hold letters, digits, '_', '.', '-' (64 max)"
            )
        _check_value(value, f"{field}.{key}")
    return dict(raw)


def merge_attributes(current: dict[str, Any], changes: dict[str, Any], field: str = "attributes") -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_ATTRIBUTES:
        raise InvalidInput(field, f"a contact has at most {MAX_ATTRIBUTES} attributes")
    if len(json.dumps(merged)) > MAX_ATTRIBUTES_BYTES:
        raise InvalidInput(field, f"a contact's attributes take at most {MAX_ATTRIBUTES_BYTES} bytes")
    return merged
