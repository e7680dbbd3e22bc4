"""The OpenAPI shape of a template's `variables`, `options` and `card`, from the checks in campaigns/templates.py
(`_check_shape`) and campaigns/templating.py (`check_variables`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.templates import MAX_CARD_BUTTONS, MAX_QUICK_REPLY_OPTIONS

VARIABLES: dict[str, Any] = {
    "type": "array",
    "description": "Exactly the custom placeholders the content, options and card use (contact values need not be "
    "listed).",
    "items": {"type": "string"},
    "example": ["name", "code"],
}

OPTIONS: dict[str, Any] = {
    "type": "array",
    "nullable": True,
    "description": f"quick_reply templates only: 1 to {MAX_QUICK_REPLY_OPTIONS} options.",
    "maxItems": MAX_QUICK_REPLY_OPTIONS,
    "items": {
        "type": "object",
        "required": ["label"],
        "additionalProperties": False,
        "properties": {
            "label": {"type": "string", "minLength": 1, "maxLength": 36},
            "description": {"type": "string", "maxLength": 72},
            "metadata": {"type": "string", "maxLength": 1000},
        },
    },
}

CARD: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": "card templates only.",
    "properties": {
        "imageUrl": {"type": "string", "pattern": "^https://", "example": "https://example.com/banner.png"},
        "buttons": {
            "type": "array",
            "maxItems": MAX_CARD_BUTTONS,
            "items": {
                "type": "object",
                "required": ["label", "url"],
                "properties": {
                    "label": {"type": "string", "minLength": 1},
                    "url": {"type": "string", "pattern": "^https?://"},
                },
            },
        },
    },
}


@extend_schema_field(VARIABLES)
class VariablesField(serializers.JSONField):
    pass


@extend_schema_field(OPTIONS)
class OptionsField(serializers.JSONField):
    pass


@extend_schema_field(CARD)
class CardField(serializers.JSONField):
    pass
