"""Erasure hooks: what other apps keep about a contact, erased with it.

An erasure must reach everything stored about the person, including rows of apps that `contacts` may not import
(the inbound edge's raw webhook events: dependencies point one way, ARCHITECTURE.md). Each such app registers a hook
here from its AppConfig.ready(); `contact_erase` runs every hook inside its transaction, so a failing hook undoes the
whole erasure. `contacts` knows only this signature, never what the hooks store or how."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ErasedContact:
    """Who is being erased, in the terms other apps key their rows by."""

    contact_id: uuid.UUID
    merchant_id: uuid.UUID
    account_x_user_id: str  # the connected X account (the shop) the contact talked to
    x_user_id: str  # the contact's own X user id


ErasureHook = Callable[[ErasedContact], int]  # how many records it erased or redacted

_hooks: dict[str, ErasureHook] = {}


def erasure_hook_register(name: str, hook: ErasureHook) -> None:
    """Register `hook` under `name` (a name registered again is replaced: ready() may run more than once)."""
    _hooks[name] = hook


def erasure_hooks() -> dict[str, ErasureHook]:
    return dict(_hooks)


def erasure_hooks_run(erased: ErasedContact) -> dict[str, int]:
    """Run every hook; what each one erased, by name."""
    return {name: hook(erased) for name, hook in _hooks.items()}
