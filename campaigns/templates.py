"""Templates (and, with the campaigns work, campaigns)."""

from __future__ import annotations

import uuid
from typing import Any

from campaigns.hooks import template_users
from campaigns.models import ACTIVE_STATUSES, Template, TemplateType
from campaigns.templating import MAX_TEXT, check_variables, placeholders, texts_of
from mktx.api.errors import InvalidInput, ResourceInUse

MAX_QUICK_REPLY_OPTIONS = 20
MAX_CARD_BUTTONS = 3


def _check_shape(kind: str, options: Any, card: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if kind == TemplateType.QUICK_REPLY:
        if not isinstance(options, list) or not 1 <= len(options) <= MAX_QUICK_REPLY_OPTIONS:
            raise InvalidInput("options", f"a quick reply has 1 to {MAX_QUICK_REPLY_OPTIONS} options")
        for i, option in enumerate(options):
            if not isinstance(option, dict) or not isinstance(option.get("label"), str) or not option["label"].strip():
                raise InvalidInput(f"options[{i}].label", "is required")
            if len(option["label"]) > 36:
                raise InvalidInput(f"options[{i}].label", "X allows 36 characters")
            if len(str(option.get("description", ""))) > 72:
                raise InvalidInput(f"options[{i}].description", "X allows 72 characters")
            if len(str(option.get("metadata", ""))) > 1000:
                raise InvalidInput(f"options[{i}].metadata", "X allows 1000 characters")
            unknown = set(option) - {"label", "description", "metadata"}
            if unknown:
                raise InvalidInput(f"options[{i}].{sorted(unknown)[0]}", "an option has label, description, metadata")
        return options, {}
    if kind == TemplateType.CARD:
        if not isinstance(card, dict):
            raise InvalidInput("card", "a card has imageUrl and buttons")
        image = card.get("imageUrl")
        if not isinstance(image, str) or not image.startswith("https://"):
            raise InvalidInput("card.imageUrl", "must be an https URL")
        buttons = card.get("buttons", [])
        if not isinstance(buttons, list) or len(buttons) > MAX_CARD_BUTTONS:
            raise InvalidInput("card.buttons", f"at most {MAX_CARD_BUTTONS} link buttons")
        for i, button in enumerate(buttons):
            if not isinstance(button, dict) or not str(button.get("label", "")).strip():
                raise InvalidInput(f"card.buttons[{i}].label", "is required")
            if not str(button.get("url", "")).startswith(("https://", "http://")):
                raise InvalidInput(f"card.buttons[{i}].url", "must be an http(s) URL")
        return [], {"imageUrl": image, "buttons": [{"label": b["label"], "url": b["url"]} for b in buttons]}
    if options:
        raise InvalidInput("options", "only quick_reply templates have options")
    if card:
        raise InvalidInput("card", "only card templates have a card")
    return [], {}


def _checked(*, name: str, type: str, content: str, variables: Any, options: Any, card: Any) -> dict[str, Any]:
    """The template's parts checked together (the serializer has checked each field alone): the shape of its
    type, and `variables` listing exactly the custom placeholders it uses."""
    if not content.strip():
        raise InvalidInput("content", "must not be blank")
    if len(content) > MAX_TEXT:
        raise InvalidInput("content", f"X allows {MAX_TEXT} characters")
    options, card = _check_shape(type, options or [], card or {})
    used = placeholders(*texts_of(content, options, card))
    return {
        "name": name.strip()[:200],
        "type": type,
        "content": content,
        "variables": check_variables(variables if variables is not None else [], used),
        "options": options,
        "card": card,
    }


def template_create(
    *,
    merchant_id: uuid.UUID,
    name: str,
    content: str,
    type: str = TemplateType.TEXT,
    variables: list[str] | None = None,
    options: list[dict[str, Any]] | None = None,
    card: dict[str, Any] | None = None,
) -> Template:
    parts = _checked(name=name, type=type, content=content, variables=variables, options=options, card=card)
    return Template.objects.create(merchant_id=merchant_id, **parts)


def template_update(
    *,
    template: Template,
    name: str | None = None,
    content: str | None = None,
    type: str | None = None,
    variables: list[str] | None = None,
    options: list[dict[str, Any]] | None = None,
    card: dict[str, Any] | None = None,
) -> Template:
    """The given parts change (None: unchanged); the whole is checked again."""
    parts = _checked(
        name=template.name if name is None else name,
        type=template.type if type is None else type,
        content=template.content if content is None else content,
        variables=template.variables if variables is None else variables,
        options=template.options if options is None else options,
        card=template.card if card is None else card,
    )
    for field, value in parts.items():
        setattr(template, field, value)
    template.save()
    return template


def template_delete(*, template: Template) -> None:
    in_use = list(template.campaigns.filter(status__in=ACTIVE_STATUSES).values_list("pk", flat=True))
    if in_use:
        raise ResourceInUse(
            "The template is used by active campaigns", details={"campaignIds": [str(pk) for pk in in_use]}
        )
    others = template_users(template)  # active flows (campaigns/hooks.py)
    if others:
        raise ResourceInUse("The template is used by active flows: deactivate them first", details=others)
    template.delete()  # drafts and finished campaigns keep their rows, without the template
