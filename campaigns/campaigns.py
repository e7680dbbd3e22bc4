"""Writing a campaign: create and update, with the serializer's validated data in Python names (the state changes
are in lifecycle.py). Also how a campaign's schedule is stored: columns, read back as a `Schedule`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns import queue
from campaigns.audience import check_startable
from campaigns.models import Campaign, CampaignStatus, Template
from campaigns.schedule import Schedule, occurrence
from campaigns.send_window import SendWindow
from contacts.models import Segment
from mktx.api.errors import ApiError, InvalidInput, NotFoundError

EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
UNSET: Any = object()  # an argument of campaign_update that was not given


class InvalidState(ApiError):
    """The campaign is not in a state that allows the action."""

    def __init__(self, campaign: Campaign, action: str, allowed: Iterable[str]) -> None:
        allowed = [str(state) for state in allowed]
        super().__init__(
            f"Cannot {action} a {campaign.status} campaign (only {' or '.join(allowed)})",
            details={"field": "status", "status": campaign.status, "allowed": allowed},
        )


def schedule_of(campaign: Campaign) -> Schedule:
    window = None
    if campaign.send_window_start is not None and campaign.send_window_end is not None:
        window = SendWindow(campaign.send_window_start, campaign.send_window_end, tuple(campaign.send_window_days))
    return Schedule(
        campaign.start_at,
        campaign.end_at,
        campaign.recurrence_frequency or None,
        campaign.recurrence_interval,
        campaign.recurrence_until,
        window,
    )


def _schedule_columns(schedule: Schedule) -> dict[str, Any]:
    window = schedule.send_window
    return {
        "start_at": schedule.start_at,
        "end_at": schedule.end_at,
        "recurrence_frequency": schedule.frequency or "",
        "recurrence_interval": schedule.interval,
        "recurrence_until": schedule.until,
        "send_window_start": window.start if window else None,
        "send_window_end": window.end if window else None,
        "send_window_days": list(window.days) if window else [],
    }


def _template(merchant_id: uuid.UUID, template_id: uuid.UUID) -> Template:
    template = Template.objects.filter(merchant_id=merchant_id, pk=template_id).first()
    if template is None:
        raise NotFoundError("Template not found", details={"field": "templateId", "id": str(template_id)})
    return template


def _segments(merchant_id: uuid.UUID, segment_ids: list[uuid.UUID]) -> list[Segment]:
    found = {s.pk: s for s in Segment.objects.filter(merchant_id=merchant_id, pk__in=segment_ids)}
    for i, segment_id in enumerate(segment_ids):
        if segment_id not in found:
            raise NotFoundError("Segment not found", details={"field": f"segmentIds[{i}]", "id": str(segment_id)})
    return [found[i] for i in dict.fromkeys(segment_ids)]


def check_recurrence_start(schedule: Schedule) -> None:
    """A recurrence anchored in the past would owe every occurrence since: it starts in the future, or now (none)."""
    if schedule.recurring and schedule.start_at is not None and schedule.start_at <= timezone.now():
        raise InvalidInput("schedule.startAt", "a recurrence must start in the future (or leave it empty: now)")


def occurrence_index(campaign: Campaign) -> int:
    """The number of the campaign's next occurrence: the ones sent (runs) and the ones skipped come before it."""
    return campaign.run_count + campaign.skipped_occurrences + 1


def campaign_create(
    *,
    merchant_id: uuid.UUID,
    name: str,
    type: str,
    template_id: uuid.UUID,
    segment_ids: list[uuid.UUID],
    schedule: Schedule | None = None,
    variables: dict[str, Any] | None = None,
) -> Campaign:
    schedule = schedule or Schedule(None, None)
    check_recurrence_start(schedule)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            merchant_id=merchant_id,
            name=name,
            type=type,
            template=_template(merchant_id, template_id),
            variables=dict(variables or {}),
            **_schedule_columns(schedule),
        )
        campaign.segments.set(_segments(merchant_id, segment_ids))
    return campaign


def campaign_update(
    *,
    campaign: Campaign,
    name: str = UNSET,
    type: str = UNSET,
    template_id: uuid.UUID = UNSET,
    segment_ids: list[uuid.UUID] = UNSET,
    schedule: Schedule = UNSET,
    variables: dict[str, Any] = UNSET,
) -> Campaign:
    """Only a draft or scheduled campaign changes; a scheduled one is re-checked and re-timed."""
    if campaign.status not in EDITABLE:
        raise InvalidState(campaign, "update", EDITABLE)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in EDITABLE:
            raise InvalidState(campaign, "update", EDITABLE)
        if name is not UNSET:
            campaign.name = name
        if type is not UNSET:
            campaign.type = type
        if template_id is not UNSET:
            campaign.template = _template(campaign.merchant_id, template_id)
        if variables is not UNSET:
            campaign.variables = dict(variables or {})
        if schedule is not UNSET:
            if campaign.started_at is None:  # a recurrence under way keeps its anchor, however old its startAt
                check_recurrence_start(schedule)
            for column, value in _schedule_columns(schedule).items():
                setattr(campaign, column, value)
        if segment_ids is not UNSET:
            campaign.segments.set(_segments(campaign.merchant_id, segment_ids))
        if campaign.status == CampaignStatus.SCHEDULED:
            _retime(campaign)
        campaign.save()
    return campaign


def _retime(campaign: Campaign) -> None:
    schedule = schedule_of(campaign)
    check_startable(campaign, schedule)
    if campaign.started_at:  # between two occurrences of a recurrence
        campaign.next_run_at = occurrence(schedule, campaign.started_at, occurrence_index(campaign))
        if campaign.next_run_at is None:
            raise InvalidInput("schedule.recurrence.until", "would end the recurrence: cancel it instead")
    else:
        if schedule.start_at is None or schedule.start_at <= timezone.now():
            raise InvalidInput("schedule.startAt", "a scheduled campaign needs a start in the future")
        campaign.next_run_at = schedule.start_at
    queue.fire_schedule_set(campaign.pk, campaign.next_run_at)
