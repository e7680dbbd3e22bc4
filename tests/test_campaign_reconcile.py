# ruff: noqa: F811
"""The reconciliation of campaign sends whose worker died between X and the record (`leases_reconcile`): one
lookup of X per lost send however many lanes reconcile at once, and none before X's reset after a 429 (found by
bench/chaos.py: PostgreSQL stopped mid-campaign spent an account's 300 DM-event lookups per 15 minutes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from campaigns.lanes import sender_step
from campaigns.models import Delivery
from mktx.xapi.client import XClient
from tests.campaign_helpers import drain

# the sender tests' fixtures (api, shop, crowd, fans), used here by name: ruff's F811 is off for this file
from tests.test_campaign_sender import Crash, api, crowd, fans, shop, started, statuses  # noqa: F401

pytestmark = pytest.mark.django_db


def _one_send_lost_with_its_worker(api, sandbox, fans, clock, monkeypatch) -> dict:
    """A campaign whose worker died right after X took one of its DMs, before recording it; the lease expired."""
    from django.conf import settings

    sandbox.limits(dm15m=100_000)
    data = started(api, fans)
    sender_step()  # the first DM, which tells the sender X's window
    clock.shift(timedelta(seconds=2))
    original_send, calls = XClient.send_dm, {"n": 0}

    def dying_send(self, participant_id, **kwargs):
        calls["n"] += 1
        sent = original_send(self, participant_id, **kwargs)
        if calls["n"] == 2:
            raise Crash  # X has the DM; the worker dies before recording it
        return sent

    monkeypatch.setattr(XClient, "send_dm", dying_send)
    with pytest.raises(Crash):
        sender_step()
    monkeypatch.setattr(XClient, "send_dm", original_send)
    assert Delivery.objects.filter(campaign_id=data["id"], status="sending").count() == 1
    clock.shift(timedelta(seconds=settings.MKTX_SENDER_LEASE_SECONDS + 1))
    return data


def _lookups(sandbox, shop) -> int:
    used = requests.get(sandbox.url + "/_sandbox/usage", timeout=5).json()
    return int(used.get(shop["id"], {}).get("dm_events", 0))


def test_a_send_lost_with_its_worker_is_looked_up_once_though_two_lanes_reconcile_at_once(
    api, sandbox, shop, crowd, fans, clock, settings, monkeypatch
):
    # found by bench/chaos.py (PostgreSQL stopped mid-campaign): every lane's pass asked X about the same lost
    # sends, and an account's 300 DM-event lookups per 15 minutes ran out
    from campaigns import deliveries

    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    data = _one_send_lost_with_its_worker(api, sandbox, fans, clock, monkeypatch)
    real_found, nested = deliveries.message_found_at_x, []

    def found_while_another_lane_passes(*, message):
        nested.append(deliveries.leases_reconcile(timezone.now()))  # the other lane's pass, meanwhile
        return real_found(message=message)

    monkeypatch.setattr(deliveries, "message_found_at_x", found_while_another_lane_passes)
    before = _lookups(sandbox, shop)
    assert deliveries.leases_reconcile(timezone.now()) == 1
    assert nested == [0]  # the other pass left it alone: it was taken
    assert _lookups(sandbox, shop) - before == 1
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert len(sandbox.dms(senderId=shop["id"])) == 4


def test_a_lost_send_whose_lookup_x_refuses_with_429_waits_for_xs_reset(
    api, sandbox, shop, crowd, fans, clock, settings, monkeypatch
):
    from campaigns import deliveries

    settings.MKTX_X_DM_DAILY_LIMIT = 100_000
    data = _one_send_lost_with_its_worker(api, sandbox, fans, clock, monkeypatch)
    sandbox.fault(method="GET", pathPrefix="/2/dm_conversations", status=429, times=1, resetSeconds=600)
    before = _lookups(sandbox, shop)
    assert deliveries.leases_reconcile(timezone.now()) == 0
    lost = Delivery.objects.get(campaign_id=data["id"], status="sending")
    # not asked again before X's reset
    assert lost.lease_until is not None and lost.lease_until > timezone.now() + timedelta(seconds=590)
    assert deliveries.leases_reconcile(timezone.now()) == 0
    assert _lookups(sandbox, shop) - before == 0  # the refused call is a fault: X counted none
    clock.shift(timedelta(seconds=601))
    drain(clock)
    assert statuses(data["id"]) == ["sent"] * 4
    assert len(sandbox.dms(senderId=shop["id"])) == 4
