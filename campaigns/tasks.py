"""django-q2 tasks of campaigns: they take ids, reload rows, and are safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from campaigns.models import CampaignStatus, Delivery, DeliveryStatus
from mktx.queue import task_enqueue


def kick_sender() -> None:
    """Queue sender loops (each takes a lane or exits at once)."""
    lanes = 1 if settings.MKTX_SENDER_BUDGET_SECONDS == 0 else settings.MKTX_SENDER_LANES
    for _ in range(lanes):  # one that could not be queued: the minute sweep wakes the sender
        if not task_enqueue("campaigns.tasks.run_sender", task_name="campaign-sender"):
            return


def run_sender() -> str:
    from campaigns.sender import sender_run

    return sender_run()


def fire_campaign(campaign_id: str) -> str:
    """A scheduled occurrence's one-off schedule: fire it, then send."""
    from campaigns.lifecycle import campaign_fire_or_fail

    fired = campaign_fire_or_fail(campaign_id=campaign_id)
    return "fired" if fired else "not due or not scheduled"


def freeze_run(run_id: int) -> str:
    from campaigns.lifecycle import run_freeze

    count = run_freeze(run_id=run_id)
    return "already frozen" if count is None else f"{count} recipients"


def sweep_campaigns() -> str:
    """Every minute: fire what is due (a missed one-off schedule), and wake the sender when anything waits
    (deliveries deferred by a quota resume by themselves this way)."""
    from campaigns.sender import campaigns_fire_due

    now = timezone.now()
    fired = campaigns_fire_due(now)
    from campaigns.models import CampaignRun

    lost = CampaignRun.objects.filter(
        status="running", audience_frozen_at__isnull=True, started_at__lt=now - timedelta(minutes=5)
    ).values_list("pk", flat=True)
    for run_id in lost[:10]:  # a freeze task lost with its worker
        task_enqueue("campaigns.tasks.freeze_run", run_id, task_name="campaign-freeze")
    waiting = Delivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING],
        campaign__status=CampaignStatus.RUNNING,
    ).exists()
    if waiting or fired:
        kick_sender()
    return f"fired {fired}; sender {'woken' if waiting or fired else 'idle'}"
