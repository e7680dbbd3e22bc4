"""A memo for the length of one batch of work (a drain's batch of inbound events, a batch of flow steps): what the
batch reads again and again (the account an event is for, the merchant's AI settings, the flows a trigger looks
for) is read once. Outside `batch_memo()` nothing is memoized, so a request always reads fresh rows.

What a batch memoizes may be a few seconds old by its end: a change made meanwhile applies from the next batch."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_memo: contextvars.ContextVar[dict[Hashable, Any] | None] = contextvars.ContextVar("batch_memo", default=None)


@contextmanager
def batch_memo() -> Iterator[None]:
    """Memoize `memoized` reads until the block ends (nested blocks share the outer one's memo)."""
    if _memo.get() is not None:
        yield
        return
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def memoized(key: Hashable, read: Callable[[], T]) -> T:
    """`read()`, once per `key` inside a `batch_memo()` block; every time outside one. None is not remembered: what
    was missing (an X user's account) is read again, so that a row created meanwhile is seen."""
    memo = _memo.get()
    if memo is None:
        return read()
    if key in memo:
        return memo[key]
    value = read()
    if value is not None:
        memo[key] = value
    return value


def memo_forget(key: Hashable) -> None:
    """Drop one memoized read (the batch changed what it read)."""
    memo = _memo.get()
    if memo is not None:
        memo.pop(key, None)


def memo_seed(values: dict[Hashable, Any]) -> None:
    """Remember reads made for many keys at once (a batch's prefetch), as if `memoized` had made them; nothing
    outside a `batch_memo()` block."""
    memo = _memo.get()
    if memo is not None:
        memo.update(values)
