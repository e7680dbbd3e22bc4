"""Lanes (mktx/lanes.py): a loop killed with its worker frees its lane within MKTX_LANE_LEASE_SECONDS, because each
loop renews a short lease every pass (found by bench/chaos.py: a SIGKILLed qcluster held its lane for the loop's
whole budget plus a minute, and with every lane so held the campaign stopped)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from automation.models import ResumerLane
from campaigns import lanes as sender_lanes
from campaigns.models import SenderLane
from mktx.lanes import lane_acquire, lane_release, lane_renew

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [SenderLane, ResumerLane])
def test_a_killed_loops_lane_is_taken_over_once_its_short_lease_ends(model):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        assert lane_acquire(model, 1, "killed") == 1  # its loop dies now: nothing renews or releases it
        lease = model.objects.get(pk=1).lease_until
        assert lease == timezone.now() + timedelta(seconds=settings.MKTX_LANE_LEASE_SECONDS)
        assert lane_acquire(model, 1, "next") is None
        traveller.shift(timedelta(seconds=settings.MKTX_LANE_LEASE_SECONDS - 1))
        assert lane_acquire(model, 1, "next") is None
        traveller.shift(timedelta(seconds=2))
        assert lane_acquire(model, 1, "next") == 1
        assert not lane_renew(model, 1, "killed")  # the old holder, were it alive, would stop
        assert model.objects.get(pk=1).holder == "next"
        lane_release(model, 1, "killed")  # a stale release leaves the new holder alone
        assert model.objects.get(pk=1).holder == "next"


def test_the_sender_loop_renews_its_lane_every_pass_and_stops_once_another_holds_it(settings, monkeypatch):
    settings.MKTX_SENDER_LANES = 1
    leases: list[datetime] = []

    def step(now=None, *, holder=None):
        lane = SenderLane.objects.get(pk=1)
        assert lane.holder == holder
        assert lane.lease_until is not None
        leases.append(lane.lease_until)
        if len(leases) == 3:  # its lease ran out meanwhile, and another loop took the lane
            SenderLane.objects.filter(pk=1).update(holder="other", lease_until=timezone.now() + timedelta(seconds=30))
        return timezone.now() + timedelta(milliseconds=20)

    monkeypatch.setattr(sender_lanes, "sender_step", step)
    summary = sender_lanes.sender_run(budget=30)
    assert "lost after 3 steps" in summary
    assert len(leases) == 3 and leases[0] < leases[1] < leases[2]  # renewed before each pass
    assert SenderLane.objects.get(pk=1).holder == "other"  # not released from under the new holder


@pytest.mark.django_db(transaction=True)
def test_a_pass_longer_than_the_lease_keeps_its_lane_by_the_heartbeat(settings, monkeypatch):
    # the review of the lanes: a pass (reconciling, a slow X, a loaded machine) can outlast the 30 s lease, which a
    # renewal between passes alone would let another loop take
    import threading

    settings.MKTX_SENDER_LANES = 1
    settings.MKTX_LANE_LEASE_SECONDS = 0.6  # the heartbeat renews every 0.2 s
    taken: list[int | None] = []

    def long_step(now=None, *, holder=None):
        threading.Event().wait(1.5)  # 2.5 leases
        return  # nothing more due: the loop ends

    def another_loop() -> None:
        threading.Event().wait(1.0)  # the first lease has run out by now, unless renewed
        taken.append(lane_acquire(SenderLane, 1, "another"))
        from django.db import connection

        connection.close()

    monkeypatch.setattr(sender_lanes, "sender_step", long_step)
    rival = threading.Thread(target=another_loop)
    rival.start()
    summary = sender_lanes.sender_run(budget=30)
    rival.join()
    assert taken == [None]  # still held, 1 s into a 1.5 s pass
    assert summary.startswith("lane 1: 1 steps")
    assert SenderLane.objects.get(pk=1).holder == ""  # released at the end
