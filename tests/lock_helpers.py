"""Another worker holding a row's lock, for the tests of what a worker does meanwhile (PostgreSQL's row locks; the
test needs `django_db(transaction=True)` for the other connection to see its rows)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction


@contextmanager
def row_locked(model: Any, pk: Any, *, seconds: float | None = None) -> Iterator[None]:
    """The row locked (`SELECT ... FOR UPDATE`) by another connection from the start of the block: until its end, or
    for `seconds` only."""
    held, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with transaction.atomic():
            model.objects.select_for_update().get(pk=pk)
            held.set()
            if seconds is None:
                release.wait(10)
            else:
                time.sleep(seconds)
        connection.close()

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert held.wait(10), "the other worker did not lock the row"
        yield
    finally:
        release.set()
        worker.join()
