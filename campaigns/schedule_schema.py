"""The OpenAPI shape of a campaign's `schedule`, from campaigns/schedule.py's rules: what `parse_schedule` accepts
and what `Schedule.as_json` answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.schedule import EARLIEST, FREQUENCIES, LATEST, MAX_INTERVAL
from mktx.accounts.business_hours import WEEKDAYS

_YEARS = f"from {EARLIEST.year} to {LATEST.year - 1}"
HHMM_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"

SEND_WINDOW: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "additionalProperties": False,
    "required": ["start", "end"],
    "description": "DMs go out only inside this window, in the account's time zone (business hours' timezone, "
    "else UTC); outside it deliveries wait for the next opening",
    "properties": {
        "start": {"type": "string", "pattern": HHMM_PATTERN, "description": "HH:MM, before end", "example": "09:00"},
        "end": {"type": "string", "pattern": HHMM_PATTERN, "description": "HH:MM, after start", "example": "21:00"},
        "days": {
            "type": "array",
            "nullable": True,
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(WEEKDAYS)},
            "description": "The weekdays it opens on; null or absent: every day",
        },
    },
}

SCHEDULE: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "additionalProperties": False,
    "properties": {
        "startAt": {"type": "string", "format": "date-time", "nullable": True, "description": f"With a zone; {_YEARS}"},
        "endAt": {"type": "string", "format": "date-time", "nullable": True, "description": "After startAt"},
        "recurrence": {
            "type": "object",
            "nullable": True,
            "additionalProperties": False,
            "required": ["frequency"],
            "properties": {
                "frequency": {"type": "string", "enum": list(FREQUENCIES)},
                "interval": {"type": "integer", "minimum": 1, "maximum": MAX_INTERVAL, "default": 1},
                "until": {"type": "string", "format": "date", "nullable": True, "description": "Not before startAt"},
            },
        },
        "sendWindow": SEND_WINDOW,
    },
    "example": {"startAt": "2026-01-20T10:00:00Z", "endAt": None, "recurrence": None, "sendWindow": None},
}


@extend_schema_field(SCHEDULE)
class ScheduleField(serializers.JSONField):
    """Checked by campaigns.schedule.parse_schedule (naming the field at fault)."""
