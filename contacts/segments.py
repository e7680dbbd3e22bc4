"""Segment conditions: validated against a table of fields and the operators each field type allows, then compiled
into one SQL filter on contacts (PostgreSQL and SQLite alike). Field names never reach the ORM as strings: each
field maps to an expression built here, and attribute keys are checked and quoted as JSON paths."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Case, Exists, Expression, F, FloatField, Func, OuterRef, Q, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Upper
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from contacts.models import ContactSource, ContactTag
from contacts.validation import ATTRIBUTE_KEY
from mktx.api.errors import InvalidInput

MAX_DEPTH = 5
MAX_CONDITIONS = 100
MAX_LIST = 500
MAX_INTEGER = 2**53

STRING_OPS = {
    *("equals", "notEquals", "contains", "notContains", "startsWith", "endsWith", "in", "notIn", "exists", "notExists"),
}
NUMBER_OPS = {
    *("equals", "notEquals", "greaterThan", "greaterThanOrEqual", "lessThan", "lessThanOrEqual", "between", "in"),
    "notIn",
}
DATE_OPS = {"before", "after", "between", "withinLastDays", "notWithinLastDays", "exists", "notExists"}
TAG_OPS = {"contains", "notContains", "in", "notIn", "exists", "notExists"}
CHOICE_OPS = {"equals", "notEquals", "in", "notIn"}
BOOL_OPS = {"equals", "notEquals"}
ATTRIBUTE_OPS = STRING_OPS | NUMBER_OPS | DATE_OPS
ALL_OPS = ATTRIBUTE_OPS | TAG_OPS

# field -> (kind, model field)
FIELDS: dict[str, tuple[str, str]] = {
    "tags": ("tags", ""),
    "username": ("string", "username"),
    "displayName": ("string", "display_name"),
    "accountId": ("uuid", "account_id"),
    "source": ("choice", "source"),
    "following": ("bool", "following"),
    "optedOut": ("bool", "opted_out"),
    "firstInteractionAt": ("datetime", "first_interaction_at"),
    "lastInteractionAt": ("datetime", "last_interaction_at"),
    "conversationCount": ("integer", "conversation_count"),
    "messagesReceived": ("integer", "messages_received"),
}
OPS_BY_KIND = {
    "tags": TAG_OPS,
    "string": STRING_OPS,
    "uuid": CHOICE_OPS,
    "choice": CHOICE_OPS,
    "bool": BOOL_OPS,
    "datetime": DATE_OPS,
    "integer": NUMBER_OPS,
    "attribute": ATTRIBUTE_OPS,
}


class JsonTypeIs(Func):
    """Whether the attribute under `key` is a JSON number or string, the same on both databases."""

    output_field = BooleanField()

    def __init__(self, key: str, json_type: str) -> None:
        self.key, self.json_type = key, json_type
        super().__init__(F("attributes"))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]  # SQLite
        sql, params = compiler.compile(self.source_expressions[0])
        types = ("integer", "real") if self.json_type == "number" else ("text",)
        marks = ", ".join(["%s"] * len(types))
        return f"COALESCE(JSON_TYPE({sql}, %s) IN ({marks}), 0)", [*params, f'$."{self.key}"', *types]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(jsonb_typeof({sql} -> %s) = %s, false)", [*params, self.key, self.json_type]


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: Any


def _lookup(target: Any, name: str, rhs: Any) -> Q:
    lookups = {
        "exact": Exact,
        "in": In,
        "gt": GreaterThan,
        "gte": GreaterThanOrEqual,
        "lt": LessThan,
        "lte": LessThanOrEqual,
    }
    return Q(lookups[name](target, rhs))


def _attribute_number(key: str) -> Expression:
    """The attribute as a number where it is a JSON number, else NULL (CASE: no cast is tried on other types).
    On PostgreSQL the function of migration 0006, which the capped set of expression indexes is built on
    (contacts.services.attribute_indexes): the compiled SQL must keep this exact expression for them to apply."""
    if connection.vendor == "postgresql":
        return Func(F("attributes"), Value(key), function="mktx_attr_num", output_field=FloatField())
    return Case(
        When(Q(JsonTypeIs(key, "number")), then=Cast(KeyTextTransform(key, "attributes"), FloatField())),
        default=None,
        output_field=FloatField(),
    )


class JsonBoolIs(Func):
    """Whether the attribute under `key` is the JSON boolean `value`."""

    output_field = BooleanField()

    def __init__(self, key: str, value: bool) -> None:
        self.key, self.value = key, value
        super().__init__(F("attributes"))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]  # SQLite
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(JSON_TYPE({sql}, %s) = %s, 0)", [
            *params,
            f'$."{self.key}"',
            "true" if self.value else "false",
        ]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(({sql} -> %s) = %s::jsonb, false)", [*params, self.key, "true" if self.value else "false"]


def _number(value: Any, path: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{path}.value", "must be a number")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:  # SQLite binds 64 bits at most; attributes hold 2^53
        raise InvalidInput(f"{path}.value", "numbers must be within +/- 2^53")
    return value


def _when(value: Any, path: str) -> datetime:
    """An aware date-time. Impossible dates (`2024-02-30`) and offsets that push the instant out of the
    years 1 to 9999 (`9999-12-31T23:59:59-10:00`) are refused here: the database driver would raise on them."""
    reason = "must be an ISO 8601 date or date-time"
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
            if parsed is None:
                day = parse_date(value)
                parsed = datetime(day.year, day.month, day.day) if day else None
        except ValueError:
            raise InvalidInput(f"{path}.value", f"{reason}: no such date or time") from None
        if parsed is not None:
            if not timezone.is_aware(parsed):
                parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
            try:
                parsed.astimezone(UTC)  # what the database adapters do; the offset is kept for date-only compares
            except OverflowError:
                raise InvalidInput(f"{path}.value", f"{reason} in UTC from year 1 to 9999") from None
            return parsed
    raise InvalidInput(f"{path}.value", reason)


def _days(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 36500:
        raise InvalidInput(f"{path}.value", "must be a whole number of days from 1 to 36500")
    return value


def _pair(value: Any, path: str) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidInput(f"{path}.value", "between takes a list of two values [low, high]")
    return value[0], value[1]


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        raise InvalidInput(f"{path}.value", f"must be a list of 1 to {MAX_LIST} values")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise InvalidInput(f"{path}.value", "must be a string (1000 characters at most)")
    if "\x00" in value:  # the API's parser refuses it already; conditions saved by other paths land here
        raise InvalidInput(f"{path}.value", "must not contain a NUL character")
    return value


class Compiler:
    """Validates and compiles one segment's conditions for one merchant."""

    def __init__(self, merchant_id: uuid.UUID) -> None:
        self.merchant_id = merchant_id
        self.count = 0

    def compile(self, conditions: Any) -> Q:
        if not isinstance(conditions, list):
            raise InvalidInput("conditions", "must be a list of conditions (all must hold)")
        if not conditions:
            # no condition: all of the merchant's contacts. A real condition rather than an empty Q(), which
            # vanishes when OR-ed into a campaign's union of segments and leaves `pk IN ()` (EmptyResultSet)
            return Q(merchant_id=self.merchant_id)
        return self._group("all", conditions, "conditions", depth=1)

    def _group(self, match: str, items: list[Any], path: str, depth: int) -> Q:
        compiled = Q()
        for index, item in enumerate(items):
            part = self._node(item, f"{path}[{index}]", depth)
            compiled = (compiled & part) if match == "all" else (compiled | part) if index else part
        return compiled

    def _node(self, item: Any, path: str, depth: int) -> Q:
        self.count += 1
        if self.count > MAX_CONDITIONS:
            raise InvalidInput(path, f"a segment has at most {MAX_CONDITIONS} conditions")
        if not isinstance(item, dict):
            raise InvalidInput(path, "a condition is an object")
        if "conditions" in item or "match" in item:
            if depth + 1 > MAX_DEPTH:
                raise InvalidInput(path, f"groups nest at most {MAX_DEPTH} deep")
            unknown = set(item) - {"match", "conditions"}
            if unknown:
                raise InvalidInput(f"{path}.{sorted(unknown)[0]}", "a group has only match and conditions")
            if item.get("match") not in ("all", "any"):
                raise InvalidInput(f"{path}.match", "must be all or any")
            children = item.get("conditions")
            if not isinstance(children, list) or not children:
                raise InvalidInput(f"{path}.conditions", "must be a non-empty list")
            return self._group(item["match"], children, f"{path}.conditions", depth + 1)
        unknown = set(item) - {"field", "operator", "value"}
        if unknown:
            raise InvalidInput(f"{path}.{sorted(unknown)[0]}", "a condition has only field, operator and value")
        field, operator = item.get("field"), item.get("operator")
        if not isinstance(field, str):
            raise InvalidInput(f"{path}.field", "is required")
        kind, column = self._field(field, f"{path}.field")
        if not isinstance(operator, str) or operator not in OPS_BY_KIND[kind]:
            allowed = ", ".join(sorted(OPS_BY_KIND[kind]))
            raise InvalidInput(f"{path}.operator", f"{operator!r} is not an operator for {field}; use one of {allowed}")
        needs_value = operator not in ("exists", "notExists")
        if needs_value and "value" not in item:
            raise InvalidInput(f"{path}.value", "is required")
        value = item.get("value")
        if kind == "tags":
            return self._tags(operator, value, path)
        if kind == "attribute":
            return self._attribute(column, operator, value, path)
        return self._column(kind, column, operator, value, path)

    def _field(self, field: str, path: str) -> tuple[str, str]:
        if field.startswith("attributes."):
            key = field.removeprefix("attributes.")
            if not ATTRIBUTE_KEY.fullmatch(key):
                raise InvalidInput(path, "attributes.<key>: keys start with a letter and hold letters, digits, _ . -")
            return "attribute", key
        if field not in FIELDS:
            raise InvalidInput(path, f"unknown field {field!r}; use one of attributes.<key>, {', '.join(FIELDS)}")
        return FIELDS[field]

    # --- tags ---------------------------------------------------------------------------------------------------

    def _tagged(self, names: list[str]) -> Exists:
        links = ContactTag.objects.filter(contact=OuterRef("pk"), tag__merchant_id=self.merchant_id)
        return Exists(links.filter(tag__name__in=names) if names else links)

    def _tags(self, operator: str, value: Any, path: str) -> Q:
        if connection.vendor == "postgresql":
            return self._tag_names(operator, value, path)
        if operator in ("exists", "notExists"):
            exists = Q(self._tagged([]))
            return exists if operator == "exists" else ~exists
        raw = _list(value, path) if operator in ("in", "notIn") else [value]
        names = [_string(v, path).strip().casefold() for v in raw]
        q = Q(self._tagged(names))
        return q if operator in ("contains", "in") else ~q

    @staticmethod
    def _tag_names(operator: str, value: Any, path: str) -> Q:
        """PostgreSQL: the contact's own `tag_names` array, answered by its GIN index without a join."""
        if operator in ("exists", "notExists"):
            q = ~Q(tag_names=[])
            return q if operator == "exists" else ~q
        raw = _list(value, path) if operator in ("in", "notIn") else [value]
        names = [_string(v, path).strip().casefold() for v in raw]
        q = (
            Q(tag_names__contains=names[:1])
            if operator in ("contains", "notContains")
            else Q(tag_names__has_any_keys=names)
        )
        return q if operator in ("contains", "in") else ~q

    # --- columns ------------------------------------------------------------------------------------------------

    def _column(self, kind: str, column: str, operator: str, value: Any, path: str) -> Q:
        target = F(column)
        if kind == "bool":
            if not isinstance(value, bool):
                raise InvalidInput(f"{path}.value", "must be true or false")
            return Q(Exact(target, value)) if operator == "equals" else ~Q(Exact(target, value))
        if kind == "uuid":
            values = _list(value, path) if operator in ("in", "notIn") else [value]
            try:
                parsed = [uuid.UUID(str(v)) for v in values]
            except ValueError:
                raise InvalidInput(f"{path}.value", "must be an account id (UUID)") from None
            return self._membership(target, operator, parsed)
        if kind == "choice":
            values = _list(value, path) if operator in ("in", "notIn") else [value]
            if any(v not in ContactSource.values for v in values):
                raise InvalidInput(f"{path}.value", f"must be one of {', '.join(ContactSource.values)}")
            return self._membership(target, operator, values)
        if kind == "integer":
            return self._numeric(target, operator, value, path)
        if kind == "datetime":
            return self._dates(target, operator, value, path, as_text=False)
        return self._strings(target, operator, value, path)

    @staticmethod
    def _membership(target: Any, operator: str, values: list[Any]) -> Q:
        q = Q(Exact(target, values[0])) if operator in ("equals", "notEquals") else Q(In(target, values))
        return q if operator in ("equals", "in") else ~q

    @staticmethod
    def _numeric(target: Any, operator: str, value: Any, path: str) -> Q:
        if operator in ("in", "notIn"):
            q = _lookup(target, "in", [_number(v, path) for v in _list(value, path)])
            return q if operator == "in" else _not(q, target)
        if operator == "between":
            low, high = (_number(v, path) for v in _pair(value, path))
            return _lookup(target, "gte", low) & _lookup(target, "lte", high)
        name = {
            "equals": "exact",
            "notEquals": "exact",
            "greaterThan": "gt",
            "greaterThanOrEqual": "gte",
            "lessThan": "lt",
            "lessThanOrEqual": "lte",
        }[operator]
        q = _lookup(target, name, _number(value, path))
        return _not(q, target) if operator == "notEquals" else q

    @staticmethod
    def _dates(target: Any, operator: str, value: Any, path: str, as_text: bool) -> Q:
        def point(v: Any) -> Any:
            when = _when(v, path)
            return when.date().isoformat() if as_text else when

        if operator in ("exists", "notExists"):
            q = Q(IsNull(target, False))
            return q if operator == "exists" else ~q
        if operator in ("withinLastDays", "notWithinLastDays"):
            since = timezone.now() - timedelta(days=_days(value, path))
            bound = since.date().isoformat() if as_text else since
            q = Q(GreaterThanOrEqual(target, bound))
            return q if operator == "withinLastDays" else _not(q, target)
        if operator == "between":
            low, high = (point(v) for v in _pair(value, path))
            return Q(GreaterThanOrEqual(target, low)) & Q(LessThanOrEqual(target, high))
        return Q(LessThan(target, point(value))) if operator == "before" else Q(GreaterThan(target, point(value)))

    @staticmethod
    def _strings(target: Any, operator: str, value: Any, path: str) -> Q:
        if operator in ("exists", "notExists"):
            q = Q(IsNull(target, False)) & ~Q(Exact(target, ""))
            return q if operator == "exists" else ~q
        if operator in ("in", "notIn"):
            q = Q(In(target, [_string(v, path) for v in _list(value, path)]))
            return q if operator == "in" else _not(q, target)
        text = _string(value, path)
        if operator in ("equals", "notEquals"):
            q = Q(Exact(target, text))
            return q if operator == "equals" else _not(q, target)
        pattern = {"contains": "%{}%", "notContains": "%{}%", "startsWith": "{}%", "endsWith": "%{}"}[operator]
        escaped = re.sub(r"([\\%_])", r"\\\1", text.upper())
        q = Q(_Like(Upper(target), pattern.format(escaped)))
        return _not(q, target) if operator == "notContains" else q

    # --- attributes ---------------------------------------------------------------------------------------------

    def _attribute(self, key: str, operator: str, value: Any, path: str) -> Q:
        present = Q(IsNull(KeyTransform(key, "attributes"), False))
        if operator in ("exists", "notExists"):
            return present if operator == "exists" else ~present
        sample = value[0] if isinstance(value, list) and value else value
        numeric = operator in NUMBER_OPS - STRING_OPS - DATE_OPS or (
            operator in NUMBER_OPS and isinstance(sample, (int, float)) and not isinstance(sample, bool)
        )
        if numeric:
            return self._numeric(_attribute_number(key), operator, value, path)
        if operator in ("equals", "notEquals") and isinstance(sample, bool):
            q = Q(JsonBoolIs(key, sample))
            return q if operator == "equals" else ~q
        if operator in ("equals", "notEquals") and connection.vendor == "postgresql":
            # containment, answered by the GIN index on attributes
            q = Q(attributes__contains={key: _string(value, path)})
            return q if operator == "equals" else ~q
        text = KeyTextTransform(key, "attributes")
        if operator in DATE_OPS:
            return Q(JsonTypeIs(key, "string")) & self._dates(text, operator, value, path, as_text=True)
        return self._strings(text, operator, value, path)


def _not(q: Q, target: Any) -> Q:
    """The negation, counting a missing value as not matching (SQL's NOT of NULL would drop the row)."""
    return ~q | Q(IsNull(target, True))


class _Like(Func):
    """`lhs LIKE pattern ESCAPE '\\'`, the pattern already escaped and upper-cased."""

    output_field = BooleanField()

    def __init__(self, lhs: Expression, pattern: str) -> None:
        super().__init__(lhs, Value(pattern))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        lhs, lhs_params = compiler.compile(self.source_expressions[0])
        rhs, rhs_params = compiler.compile(self.source_expressions[1])
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


def compile_conditions(*, merchant_id: uuid.UUID, conditions: Any) -> Q:
    """The Q of a segment's conditions; InvalidInput naming the path of the first problem."""
    return Compiler(merchant_id).compile(conditions)


def numeric_attribute_keys(conditions: Any) -> set[str]:
    """The attribute keys compared as numbers anywhere in (valid) conditions: each deserves an index."""
    keys: set[str] = set()
    for item in conditions if isinstance(conditions, list) else []:
        if isinstance(item, dict) and isinstance(item.get("conditions"), list):
            keys |= numeric_attribute_keys(item["conditions"])
        elif isinstance(item, dict) and str(item.get("field", "")).startswith("attributes."):
            sample = item.get("value")
            sample = sample[0] if isinstance(sample, list) and sample else sample
            numeric_op = item.get("operator") in NUMBER_OPS - STRING_OPS - DATE_OPS
            if numeric_op or (isinstance(sample, (int, float)) and not isinstance(sample, bool)):
                keys.add(str(item["field"]).removeprefix("attributes."))
    return keys
