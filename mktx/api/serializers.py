"""Serializer helpers: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class CamelCaseFieldsMixin:
    """Renames snake_case fields to camelCase keys (`display_name` -> `displayName`), keeping the source.

    Validation errors are then keyed by the name the client used.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()  # type: ignore[misc]
        renamed: dict[str, serializers.Field] = {}
        for name, field in fields.items():
            camel = to_camel(name)
            if camel != name and field.source is None:
                field.source = name
            renamed[camel] = field
        return renamed


class CamelModelSerializer(CamelCaseFieldsMixin, serializers.ModelSerializer):
    pass


class CamelSerializer(CamelCaseFieldsMixin, serializers.Serializer):
    pass


class StrictFieldsMixin:
    """Rejects keys the serializer does not know, so a typo (`displayname`) is an error, not a silent no-op.

    Works for nested serializers too: the check runs on the data each serializer is given."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = {name for name, field in self.fields.items() if not field.read_only}  # type: ignore[attr-defined]
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


@extend_schema_field({"type": "string", "anyOf": [{"format": "uri"}, {"maxLength": 0}], "readOnly": True})
class UrlOrEmptyField(serializers.CharField):
    """A read-only URL that is empty when there is none (X gives some profiles no image): the schema a model's
    `URLField(blank=True)` would get (`format: uri`) calls the empty string invalid."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)
