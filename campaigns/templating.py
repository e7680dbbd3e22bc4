"""Template placeholders `{{name}}` and `{{name|default}}`, and rendering for a contact.

Each placeholder takes the first value of: the variables, the contact's attribute, the contact's profile (well-known
keys), the default (campaigns/placeholders.py says which, and checks a whole audience). A placeholder with none of
them is an error: a template is never sent with a raw `{{...}}` in it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from campaigns.placeholders import CONTACT_PREFIX, Source, fill, is_contact_placeholder
from mktx.api.errors import InvalidInput

MAX_TEXT = 10_000
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:\|([^{}]*))?\}\}")


@dataclass(frozen=True)
class Rendered:
    text: str
    options: list[dict[str, Any]] = field(default_factory=list)
    image_url: str = ""
    buttons: list[dict[str, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # placeholder -> Source that filled it, in order of use


def texts_of(content: str, options: list[dict[str, Any]], card: dict[str, Any]) -> list[str]:
    """Every text of a template that may hold placeholders."""
    texts = [content]
    texts += [str(o.get(k, "")) for o in options for k in ("label", "description")]
    texts += [str(b.get("label", "")) for b in card.get("buttons", [])]
    return texts


def placeholders(*texts: str) -> dict[str, str | None]:
    """name -> default, in order of first use; None when some use of it has no default (`{{nickname}}` beside
    `{{nickname|friend}}` still needs a value for the bare one)."""
    found: dict[str, str | None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            name, default = match.group(1), match.group(2)
            if name not in found:
                found[name] = default
            elif default is None:
                found[name] = None
    return found


def check_variables(declared: Any, used: dict[str, str | None]) -> list[str]:
    """`variables` must list exactly the placeholders used; the contact's own fields need not be listed."""
    if not isinstance(declared, list) or not all(isinstance(v, str) for v in declared):
        raise InvalidInput("variables", "must be a list of placeholder names")
    custom = [name for name in used if not is_contact_placeholder(name)]
    missing = [name for name in custom if name not in declared]
    if missing:
        raise InvalidInput("variables", f"{missing[0]!r} is used in the template but not listed")
    extra = [name for name in declared if name not in used]
    if extra:
        raise InvalidInput("variables", f"{extra[0]!r} is listed but not used in the template")
    for name in used:
        if name.startswith(CONTACT_PREFIX) and not is_contact_placeholder(name):
            raise InvalidInput(
                "content", f"{{{{{name}}}}}: contact values are displayName, username, twitterUserId, attributes.KEY"
            )
    return list(dict.fromkeys(declared))


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Filler:
    """Fills one recipient's placeholders, remembering where each value came from."""

    def __init__(self, variables: dict[str, Any], contact: Any) -> None:
        self.variables, self.contact = variables, contact
        self.sources: dict[str, str] = {}

    def text(self, text: str) -> str:
        return PLACEHOLDER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        filled = fill(name, variables=self.variables, contact=self.contact)
        if filled is None:
            if default is None:
                raise InvalidInput(f"variables.{name}", "has no value, no contact value and no default")
            self.sources.setdefault(name, Source.DEFAULT.value)
            return default
        self.sources[name] = filled.source.value
        return _format(filled.value)


def render(template: Any, *, variables: dict[str, Any] | None = None, contact: Any = None) -> Rendered:
    """The template for one recipient (`contact` None: the variables and defaults alone), with each placeholder's
    source."""
    filler = _Filler(variables or {}, contact)
    text = filler.text(template.content)
    options = [
        {**option, **{k: filler.text(str(option[k])) for k in ("label", "description") if option.get(k)}}
        for option in template.options or []
    ]
    card = template.card or {}
    buttons = [{**b, "label": filler.text(str(b.get("label", "")))} for b in card.get("buttons", [])]
    if buttons:  # X's DMs have no buttons: a card's links follow its text
        text = text + "\n\n" + "\n".join(f"{b['label']}: {b['url']}" for b in buttons)
    if len(text) > MAX_TEXT:
        raise InvalidInput("content", f"once rendered the message has {len(text)} characters; X allows {MAX_TEXT}")
    return Rendered(
        text=text, options=options, image_url=str(card.get("imageUrl", "")), buttons=buttons, sources=filler.sources
    )
