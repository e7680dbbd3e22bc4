"""A drain and the rows of the events it claimed (webhooks_app/services.py), on PostgreSQL's row locks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import AccountFactory
from tests.lock_helpers import row_locked
from webhooks_app import services
from webhooks_app.models import InboundEvent
from webhooks_app.parser import split_payload

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x_events.json").read_text())


def _claimed(merchant) -> InboundEvent:
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite takes one writer at a time)")
    AccountFactory.create(merchant=merchant, twitter_user_id=FIXTURES["direct_message"]["for_user_id"])
    services._insert_new(split_payload(FIXTURES["direct_message"]), None)
    event = InboundEvent.objects.get()
    assert services._claim(InboundEvent.objects.filter(pk=event.pk), timezone.now()) == [event.pk]
    return event


@pytest.mark.django_db(transaction=True)
def test_a_drain_waits_out_a_brief_lock_on_an_event_it_claimed_rather_than_leaving_it(merchant):
    # found by bench/load.py: another drain's claim statement keeps a row locked that its scan found claimed, until
    # its transaction ends; skipping the row then left the event for CLAIM_GAP (the lag rose to 29 s, nothing waiting)
    event = _claimed(merchant)
    with row_locked(InboundEvent, event.pk, seconds=0.5):
        started = time.monotonic()
        assert services.inbound_event_process(event_id=event.pk, claimed=True) == "processed"
        assert time.monotonic() - started >= 0.2  # it did meet the lock, and waited it out
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)


@pytest.mark.django_db(transaction=True)
def test_a_drain_leaves_an_event_it_claimed_to_a_worker_that_holds_it_for_long(merchant):
    event = _claimed(merchant)
    with row_locked(InboundEvent, event.pk):  # a worker that took it over after CLAIM_GAP, in its handler
        started = time.monotonic()
        assert services.inbound_event_process(event_id=event.pk, claimed=True) is None
        waited = time.monotonic() - started
    assert services.CLAIMED_LOCK_WAIT <= waited < services.CLAIMED_LOCK_WAIT + 2
    event.refresh_from_db()
    assert event.status == "pending"  # the other worker's to finish
