"""The OpenAPI shape of a segment's `conditions`, from the compiler's own tables (contacts/segments.py), so that the
schema names the fields and operators the compiler accepts and a client (or a fuzzer) can build real conditions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.segments import ALL_OPS, FIELDS, MAX_CONDITIONS, MAX_DEPTH

_SCALAR: list[dict[str, Any]] = [
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "date"},
    {"type": "string"},
    {"type": "number"},
    {"type": "boolean"},
]

CONDITION: dict[str, Any] = {
    "type": "object",
    "description": "`exists` and `notExists` take no value; `between` takes [low, high]; `in` and `notIn` a list; "
    "`withinLastDays` a number of days. Which operators a field takes depends on its kind.",
    "required": ["field", "operator"],
    "additionalProperties": False,
    "properties": {
        "field": {
            "type": "string",
            "anyOf": [{"enum": sorted(FIELDS)}, {"pattern": r"^attributes\.[A-Za-z][A-Za-z0-9_.-]{0,63}$"}],
            "example": "attributes.purchaseCount",
        },
        "operator": {"type": "string", "enum": sorted(ALL_OPS), "example": "greaterThan"},
        "value": {"anyOf": [*_SCALAR, {"type": "array", "items": {"anyOf": _SCALAR}}], "example": 5},
    },
}

GROUP: dict[str, Any] = {
    "type": "object",
    "description": f"Conditions joined by `match`; groups nest at most {MAX_DEPTH} deep.",
    "required": ["match", "conditions"],
    "additionalProperties": False,
    "properties": {
        "match": {"type": "string", "enum": ["all", "any"]},
        # One level spelled out; deeper groups are objects of the same shape.
        "conditions": {"type": "array", "minItems": 1, "items": {"anyOf": [CONDITION, {"type": "object"}]}},
    },
}

CONDITIONS: dict[str, Any] = {
    "type": "array",
    "description": f"All must hold (an empty list is every contact); at most {MAX_CONDITIONS} conditions in all.",
    "maxItems": MAX_CONDITIONS,
    "items": {"anyOf": [CONDITION, GROUP]},
}


@extend_schema_field(CONDITIONS)
class ConditionsField(serializers.JSONField):
    """A JSON field the compiler validates (naming the path of the first problem), documented as CONDITIONS."""
