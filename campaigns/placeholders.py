"""Where a placeholder's value comes from, for one recipient (in Python) and for a whole audience (in SQL).

`{{key}}` takes the first value found in: the campaign's (or flow node's) variables; the recipient's attribute `key`;
for the well-known keys, the recipient's profile (`name` and `displayName`: the display name, else the username;
`firstName`: the display name's first word; `username`); then the template's default. `{{contact.displayName}}`,
`{{contact.username}}`, `{{contact.twitterUserId}}` and `{{contact.attributes.KEY}}` name a contact value
explicitly. Null and the empty string are no value; a blank display name is none either.

`fill` answers for one recipient and `lacking` for an audience: the two must agree, so they sit side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db.models import BooleanField, Count, F, Func, Q, QuerySet

from contacts.models import Contact
from mktx.api.errors import InvalidInput

CONTACT_PREFIX = "contact."
ATTRIBUTES_PREFIX = "contact.attributes."
CONTACT_FIELDS = {"contact.displayName", "contact.username", "contact.twitterUserId"}
PROFILE_KEYS = ("name", "displayName", "firstName", "username")


class Source(StrEnum):
    VARIABLES = "variables"
    ATTRIBUTE = "attribute"
    PROFILE = "profile"
    CONTACT = "contact"  # an explicit contact.* form
    DEFAULT = "default"


@dataclass(frozen=True)
class Filled:
    value: Any
    source: Source


def is_contact_placeholder(name: str) -> bool:
    return name in CONTACT_FIELDS or (name.startswith(ATTRIBUTES_PREFIX) and len(name) > len(ATTRIBUTES_PREFIX))


def has_value(value: Any) -> bool:
    return value is not None and value != ""


# --- one recipient --------------------------------------------------------------------------------------------------


def _display_name(contact: Contact) -> str:
    return (contact.display_name or "").strip()


def profile_value(contact: Contact, key: str) -> str | None:
    """The profile's value for a well-known key, None when the profile has none (or the key is not one of them)."""
    display = _display_name(contact)
    if key in ("name", "displayName"):
        return display or contact.username or None
    if key == "firstName":
        return display.split()[0] if display else None
    if key == "username":
        return contact.username or None
    return None


def contact_value(contact: Contact, name: str) -> Any:
    """An explicit `contact.*` placeholder's value, None when the contact has none."""
    if name == "contact.displayName":
        return _display_name(contact) or None
    if name == "contact.username":
        return contact.username or None
    if name == "contact.twitterUserId":
        return contact.twitter_user_id or None
    if is_contact_placeholder(name):
        return (contact.attributes or {}).get(name.removeprefix(ATTRIBUTES_PREFIX))
    return None


def fill(name: str, *, variables: dict[str, Any], contact: Contact | None) -> Filled | None:
    """The value of `{{name}}` before its default, and where it came from; None when nothing fills it.
    Without a contact only the variables can."""
    if has_value(variables.get(name)):
        return Filled(variables[name], Source.VARIABLES)
    if contact is None:
        return None
    if name.startswith(CONTACT_PREFIX):
        explicit = contact_value(contact, name)
        return Filled(explicit, Source.CONTACT) if has_value(explicit) else None
    attribute = (contact.attributes or {}).get(name)
    if has_value(attribute):
        return Filled(attribute, Source.ATTRIBUTE)
    profile = profile_value(contact, name)
    if has_value(profile):
        return Filled(profile, Source.PROFILE)
    return None


# --- a whole audience -----------------------------------------------------------------------------------------------


class AttributeFilled(Func):
    """Whether the contact's attribute `key` holds a value: present, not JSON null, not "" (never SQL NULL).
    JSON_EXTRACT and `->>` both turn JSON null into SQL NULL, which the COALESCE counts as no value."""

    output_field = BooleanField()

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(F("attributes"))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]  # SQLite
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(JSON_EXTRACT({sql}, %s) <> '', 0)", [*params, "$." + json.dumps(self.key)]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(({sql} ->> %s) <> '', false)", [*params, self.key]


def _no_display_name() -> Q:
    return ~Q(display_name__regex=r"\S")  # blank, as `str.strip()` sees it


def lacking(name: str) -> Q:
    """The contacts that have no value of their own for `{{name}}` (the SQL twin of `fill` without variables)."""
    if name.startswith(CONTACT_PREFIX):
        if name == "contact.displayName":
            return _no_display_name()
        if name == "contact.username":
            return Q(username="")
        if name == "contact.twitterUserId":
            return Q(twitter_user_id="")
        if is_contact_placeholder(name):
            return ~Q(AttributeFilled(name.removeprefix(ATTRIBUTES_PREFIX)))
        return Q(pk__isnull=False)  # not a contact value: nobody has it
    no_attribute = ~Q(AttributeFilled(name))
    if name in ("name", "displayName"):
        return no_attribute & _no_display_name() & Q(username="")
    if name == "firstName":
        return no_attribute & _no_display_name()
    if name == "username":
        return no_attribute & Q(username="")
    return no_attribute


def placeholders_missing(
    contacts: QuerySet[Contact], *, used: dict[str, str | None], variables: dict[str, Any]
) -> dict[str, int]:
    """For each placeholder that neither the variables nor a default fill (in order of use): how many of `contacts`
    have no value for it. One aggregate query; none when the variables and defaults fill everything."""
    open_names = [name for name, default in used.items() if default is None and not has_value(variables.get(name))]
    if not open_names:
        return {}
    counts = contacts.aggregate(**{f"p{i}": Count("pk", filter=lacking(name)) for i, name in enumerate(open_names)})
    return {name: int(counts[f"p{i}"] or 0) for i, name in enumerate(open_names)}


def placeholders_check(contacts: QuerySet[Contact], *, used: dict[str, str | None], variables: dict[str, Any]) -> None:
    """400 naming the first placeholder (in order of use) that some recipients have no value for, and how many."""
    for name, missing in placeholders_missing(contacts, used=used, variables=variables).items():
        if missing:
            recipients = "recipient has" if missing == 1 else "recipients have"
            error = InvalidInput(
                f"variables.{name}",
                f"{missing} {recipients} no value for it (no variable, attribute or profile value): "
                f"give it a value in the variables or a default ({{{{{name}|...}}}})",
            )
            error.details["missing"] = missing
            raise error
