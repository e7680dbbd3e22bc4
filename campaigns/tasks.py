"""django-q2 tasks of campaigns: thin. They take ids, call one function, and are safe to run twice."""

from __future__ import annotations

from campaigns import lanes, lifecycle


def run_sender() -> str:
    return lanes.sender_run()


def fire_campaign(campaign_id: str) -> str:
    """A scheduled occurrence's one-off schedule."""
    fired = lifecycle.campaign_fire_or_fail(campaign_id=campaign_id)
    return "fired" if fired else "not due or not scheduled"


def freeze_run(run_id: int) -> str:
    count = lifecycle.run_freeze(run_id=run_id)
    return "already frozen" if count is None else f"{count} recipients"


def sweep_campaigns() -> str:
    """Every minute (a django-q schedule made by migration 0004)."""
    return lifecycle.campaigns_sweep()
