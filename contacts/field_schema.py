"""The OpenAPI shape of tags and attributes as the API takes them, from the rules in contacts/validation.py, so that a
client (or a fuzzer) sees what is accepted instead of "any JSON"."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.validation import MAX_ATTRIBUTE_STRING, MAX_ATTRIBUTES, MAX_TAGS_PER_REQUEST, TAG_MAX_LENGTH

TAGS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_TAGS_PER_REQUEST,
    "description": "Letters of any script, digits, '_' and '-'; stored lower-cased.",
    "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX_LENGTH, "example": "vip"},
}

ATTRIBUTE_CHANGES: dict[str, Any] = {
    "type": "object",
    "description": "key: value, keys `[A-Za-z][A-Za-z0-9_.-]{0,63}`; a value is a string, a number within +/- 2^53, "
    f"a boolean, or null to remove the key; at most {MAX_ATTRIBUTES} attributes a contact.",
    "additionalProperties": {
        "nullable": True,
        "anyOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_STRING},
            {"type": "number"},
            {"type": "boolean"},
        ],
    },
    "example": {"city": "Lisbon", "purchaseCount": 7},
}


@extend_schema_field(TAGS)
class TagsField(serializers.JSONField):
    """Checked by contacts.validation.normalize_tags (naming the item at fault)."""


@extend_schema_field(ATTRIBUTE_CHANGES)
class AttributeChangesField(serializers.JSONField):
    """Checked by contacts.validation.validate_attribute_changes (naming the key at fault)."""
