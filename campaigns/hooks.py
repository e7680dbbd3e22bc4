"""Template hooks: who else uses a template, asked before it is deleted.

Active flows send templates too, and `automation` sits above `campaigns` (dependencies point one way,
ARCHITECTURE.md): so the flows' check registers here from `AutomationConfig.ready()`, and `template_delete` asks every
registered check. A check answers the users it found as `{"flowIds": [...]}` (nothing: `{}`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TemplateUsers = Callable[[Any], dict[str, list[str]]]

_template_users: dict[str, TemplateUsers] = {}


def template_users_register(*, name: str, check: TemplateUsers) -> None:
    """Register (or replace: ready() may run more than once) the check called `name`."""
    _template_users[name] = check


def template_users(template: Any) -> dict[str, list[str]]:
    """What the registered checks found using `template`, merged."""
    found: dict[str, list[str]] = {}
    for check in _template_users.values():
        for key, ids in check(template).items():
            if ids:
                found.setdefault(key, []).extend(ids)
    return found
