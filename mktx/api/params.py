"""Query parameters, validated: a malformed value is a 400 naming the parameter, never a 500 or a silent ignore."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from rest_framework.request import Request

from mktx.api.errors import InvalidInput

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_INTEGER = re.compile(r"-?[0-9]{1,9}")


def query_uuid(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(name, "must be a UUID") from None


def query_bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(name, "must be true or false")


def query_choice(request: Request, name: str, choices: Iterable[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    allowed = list(choices)
    if raw not in allowed:
        raise InvalidInput(name, f"must be one of {', '.join(allowed)}")
    return raw


def query_int(request: Request, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise InvalidInput(name, "must be a whole number")
    value = int(raw)
    if value < minimum:
        raise InvalidInput(name, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidInput(name, f"must be at most {maximum}")
    return value
