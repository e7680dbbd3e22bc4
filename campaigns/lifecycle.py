"""Campaigns: create, update, and the state machine `draft -> scheduled -> running <-> paused -> completed`, plus
`cancelled` and `failed`. Every state change is a conditional UPDATE on the current state, so two concurrent
starts start once. Starting an occurrence freezes its audience with one set-based `INSERT ... SELECT`."""

from __future__ import annotations

import logging
import operator
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import reduce
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun, CampaignStatus, CampaignType, Delivery, DeliveryStatus, Template
from campaigns.schedule import MISSED_GRACE, CatchUp, Schedule, catch_up, occurrence, parse_schedule, run_window
from campaigns.templating import is_contact_placeholder, placeholders, texts_of
from contacts.models import Contact, Segment
from contacts.segments import compile_conditions
from contacts.selectors import contacts_of
from mktx.api.errors import ApiError, InvalidInput, NotFoundError
from mktx.queue import task_enqueue

logger = logging.getLogger("mktx.campaigns")

EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
CANCELLABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
MAX_SEGMENTS = 20
FIRE_FUNC = "campaigns.tasks.fire_campaign"


class InvalidState(ApiError):
    """The campaign is not in a state that allows the action."""

    def __init__(self, campaign: Campaign, action: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        super().__init__(
            f"Cannot {action} a {campaign.status} campaign (only {' or '.join(allowed)})",
            details={"field": "status", "status": campaign.status, "allowed": allowed},
        )


# --- input ------------------------------------------------------------------------------------------------------------


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name", "must not be blank")
    if len(value.strip()) > 200:
        raise InvalidInput("name", "at most 200 characters")
    return value.strip()


def _type(value: Any) -> str:
    if value not in CampaignType.values:
        raise InvalidInput("type", f"must be one of {', '.join(CampaignType.values)}")
    return str(value)


def _template(merchant_id: uuid.UUID, value: Any) -> Template:
    try:
        template_id = uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput("templateId", "must be a template id") from None
    template = Template.objects.filter(merchant_id=merchant_id, pk=template_id).first()
    if template is None:
        raise NotFoundError("Template not found", details={"field": "templateId", "id": str(value)})
    return template


def _segments(merchant_id: uuid.UUID, value: Any) -> list[Segment]:
    if not isinstance(value, list):
        raise InvalidInput("segmentIds", "must be a list of segment ids")
    if len(value) > MAX_SEGMENTS:
        raise InvalidInput("segmentIds", f"at most {MAX_SEGMENTS} segments")
    ids: list[uuid.UUID] = []
    for i, item in enumerate(value):
        try:
            ids.append(uuid.UUID(str(item)))
        except ValueError:
            raise InvalidInput(f"segmentIds[{i}]", "must be a segment id") from None
    found = {s.pk: s for s in Segment.objects.filter(merchant_id=merchant_id, pk__in=ids)}
    for i, segment_id in enumerate(ids):
        if segment_id not in found:
            raise NotFoundError("Segment not found", details={"field": f"segmentIds[{i}]", "id": str(segment_id)})
    return [found[i] for i in dict.fromkeys(ids)]


def _variables(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("variables", "must be an object of placeholder values")
    for key, item in value.items():
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise InvalidInput(f"variables.{key}", "must be a string, number or boolean")
    return dict(value)


def campaign_create(*, merchant_id: uuid.UUID, values: dict[str, Any]) -> Campaign:
    for required in ("name", "type", "templateId", "segmentIds"):
        if values.get(required) is None:
            raise InvalidInput(required, "is required")
    schedule = parse_schedule(values.get("schedule"))
    _check_recurrence_start(schedule)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            merchant_id=merchant_id,
            name=_name(values["name"]),
            type=_type(values["type"]),
            template=_template(merchant_id, values["templateId"]),
            variables=_variables(values.get("variables")),
            schedule=schedule.as_json(),
        )
        campaign.segments.set(_segments(merchant_id, values["segmentIds"]))
    return campaign


def campaign_update(*, campaign: Campaign, changes: dict[str, Any]) -> Campaign:
    """Only a draft or scheduled campaign changes; a scheduled one is re-checked and re-timed."""
    if campaign.status not in EDITABLE:
        raise InvalidState(campaign, "update", EDITABLE)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in EDITABLE:
            raise InvalidState(campaign, "update", EDITABLE)
        if "name" in changes:
            campaign.name = _name(changes["name"])
        if "type" in changes:
            campaign.type = _type(changes["type"])
        if "templateId" in changes:
            campaign.template = _template(campaign.merchant_id, changes["templateId"])
        if "variables" in changes:
            campaign.variables = _variables(changes["variables"])
        if "schedule" in changes:
            given = changes["schedule"]
            merged = {**campaign.schedule, **given} if isinstance(given, dict) and given else given or None
            parsed = parse_schedule(merged)
            if campaign.started_at is None:  # a recurrence under way keeps its anchor, however old its startAt
                _check_recurrence_start(parsed)
            campaign.schedule = parsed.as_json()
        if "segmentIds" in changes:
            campaign.segments.set(_segments(campaign.merchant_id, changes["segmentIds"]))
        if campaign.status == CampaignStatus.SCHEDULED:
            schedule = parse_schedule(campaign.schedule)
            _check_startable(campaign, schedule)
            if campaign.started_at:  # between two occurrences of a recurrence
                campaign.next_run_at = occurrence(schedule, campaign.started_at, _occurrence_index(campaign))
                if campaign.next_run_at is None:
                    raise InvalidInput("schedule.recurrence.until", "would end the recurrence: cancel it instead")
            else:
                if schedule.start_at is None or schedule.start_at <= timezone.now():
                    raise InvalidInput("schedule.startAt", "a scheduled campaign needs a start in the future")
                campaign.next_run_at = schedule.start_at
            campaign_fire_schedule(campaign)
        campaign.save()
    return campaign


def _check_recurrence_start(schedule: Schedule) -> None:
    """A recurrence anchored in the past would owe every occurrence since: it starts in the future, or now (none)."""
    if schedule.recurring and schedule.start_at is not None and schedule.start_at <= timezone.now():
        raise InvalidInput("schedule.startAt", "a recurrence must start in the future (or leave it empty: now)")


def _occurrence_index(campaign: Campaign) -> int:
    """The number of the campaign's next occurrence: the ones sent (runs) and the ones skipped come before it."""
    return campaign.run_count + campaign.skipped_occurrences + 1


# --- starting -----------------------------------------------------------------------------------------------------


def audience_of(campaign: Campaign, segments: list[Segment] | None = None) -> QuerySet[Contact]:
    """The union of the campaign's segments: one query, each contact once however many segments it is in."""
    segments = segments if segments is not None else list(campaign.segments.all())
    contacts = contacts_of(campaign.merchant_id)
    if not segments:
        return contacts.none()
    parts = [compile_conditions(merchant_id=campaign.merchant_id, conditions=s.conditions) for s in segments]
    return contacts.filter(reduce(operator.or_, parts))


def _check_startable(campaign: Campaign, schedule: Schedule) -> None:
    """No segments, no (valid) template, or a placeholder nothing can fill: 400 naming it."""
    segments = list(campaign.segments.all())
    if not segments:
        raise InvalidInput("segmentIds", "the campaign has no segments")
    template = campaign.template
    if template is None:
        raise InvalidInput("templateId", "the campaign's template was deleted")
    used = placeholders(*texts_of(template.content, template.options or [], template.card or {}))
    for name, default in used.items():
        if default is not None or campaign.variables.get(name) not in (None, ""):
            continue
        if not is_contact_placeholder(name):
            raise InvalidInput(f"variables.{name}", "the template uses it and it has no value and no default")
        if name.startswith("contact.attributes."):
            key = name.removeprefix("contact.attributes.")
            lacking = audience_of(campaign, segments).exclude(attributes__has_key=key).count()
            if lacking:
                raise InvalidInput(
                    f"variables.{name}",
                    f"{lacking} contacts of the audience have no {key!r} attribute: give the placeholder a default",
                )
    if schedule.end_at is not None and not schedule.recurring and schedule.end_at <= timezone.now():
        raise InvalidInput("schedule.endAt", "is already past")


def campaign_fire_schedule(campaign: Campaign) -> None:
    """A django-q2 one-off schedule fires the occurrence at its time (the minute sweep catches a missed one)."""
    from django_q.models import Schedule as QSchedule

    QSchedule.objects.filter(name=f"campaign:{campaign.pk}").delete()
    if campaign.next_run_at is None:
        return
    QSchedule.objects.create(
        name=f"campaign:{campaign.pk}",
        func=FIRE_FUNC,
        args=repr(str(campaign.pk)),
        schedule_type=QSchedule.ONCE,
        repeats=-1,
        next_run=campaign.next_run_at,
    )


def _unschedule(campaign: Campaign) -> None:
    from django_q.models import Schedule as QSchedule

    QSchedule.objects.filter(name=f"campaign:{campaign.pk}").delete()


def _dialect_value(field_owner: type, name: str, value: Any) -> Any:
    field = field_owner._meta.get_field(name)  # type: ignore[attr-defined]
    return field.get_db_prep_value(value, connection)


def audience_freeze(*, campaign: Campaign, run: CampaignRun) -> int:
    """One `INSERT ... SELECT` of the run's deliveries from the union of the segments: the audience never passes
    through Python. Answers the number of recipients."""
    try:
        contacts_sql, params = audience_of(campaign).values_list("id", "account_id").query.sql_with_params()
    except EmptyResultSet:  # a query Django knows matches nothing has no SQL: nobody to insert
        contacts_sql, params = "SELECT NULL AS id, NULL AS account_id WHERE 1 = 0", ()
    table = connection.ops.quote_name(Delivery._meta.db_table)
    insert = (
        f"INSERT INTO {table} (run_id, campaign_id, contact_id, account_id, status, reason, error_detail, "  # noqa: S608
        "attempts, failures, next_attempt_at, dm_event_id, created_at) "
        f"SELECT %s, %s, audience.id, audience.account_id, %s, '', '', 0, 0, %s, '', %s FROM ({contacts_sql}) audience"
    )
    now = _dialect_value(Delivery, "created_at", run.started_at)
    head = [run.pk, _dialect_value(Delivery, "campaign", campaign.pk), DeliveryStatus.PENDING, now, now]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(insert, head + list(params))
            count = cursor.rowcount
        frozen_at = timezone.now()
        CampaignRun.objects.filter(pk=run.pk).update(audience_size=count, audience_frozen_at=frozen_at)
    run.audience_size, run.audience_frozen_at = count, frozen_at
    return count


def run_freeze(*, run_id: Any) -> int | None:
    """The freeze of a large audience, in a worker: once (the run row is locked and checked)."""
    try:
        with transaction.atomic():
            run = CampaignRun.objects.select_for_update().select_related("campaign").filter(pk=run_id).first()
            if run is None or run.audience_frozen_at is not None or run.status != "running":
                return None
            count = audience_freeze(campaign=run.campaign, run=run)
            _kick_sender()
    except TRANSIENT_DATABASE_ERRORS:  # a deadlock, a timeout, a lost connection: the sweep queues it again
        logger.warning(
            "run %s: the freeze met a transient database error; it will be tried again", run_id, exc_info=True
        )
        return None
    except Exception as exc:  # else the sweep would queue the same failing freeze every minute, forever
        logger.exception("run %s: the audience could not be frozen", run_id)
        _run_failed(run_id, _failure_reason(exc))
        return None
    logger.info("campaign %s run %s: %s recipients frozen", run.campaign_id, run.number, count)
    return count


def _run_failed(run_id: Any, reason: str) -> None:
    now = timezone.now()
    campaign_id = CampaignRun.objects.filter(pk=run_id).values_list("campaign_id", flat=True).first()
    if campaign_id is None:
        return
    with transaction.atomic():
        CampaignRun.objects.filter(pk=run_id, status="running").update(status="cancelled", finished_at=now)
        Campaign.objects.filter(pk=campaign_id, status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]).update(
            status=CampaignStatus.FAILED, status_reason=reason[:500], finished_at=now, next_run_at=None, updated_at=now
        )


def _begin_run(campaign: Campaign, at: datetime) -> CampaignRun:
    schedule = parse_schedule(campaign.schedule)
    first = campaign.started_at or at
    number, index = campaign.run_count + 1, _occurrence_index(campaign)
    run = CampaignRun.objects.create(
        campaign=campaign,
        number=number,
        started_at=at,
        ends_at=run_window(schedule, first, occurrence(schedule, first, index) or at),
    )
    estimate = sum(s.contact_count or 0 for s in campaign.segments.all())
    if estimate <= settings.MKTX_INLINE_FREEZE_LIMIT:
        audience_freeze(campaign=campaign, run=run)
    else:  # a large audience is frozen by a worker, not inside the API request
        # a freeze that could not be queued is found by the minute sweep (campaigns.tasks.sweep_campaigns)
        transaction.on_commit(lambda: task_enqueue("campaigns.tasks.freeze_run", run.pk, task_name="campaign-freeze"))
    upcoming = occurrence(schedule, first, index + 1)
    Campaign.objects.filter(pk=campaign.pk).update(
        run_count=number, started_at=first, next_run_at=upcoming, status_reason=""
    )
    campaign.run_count, campaign.started_at, campaign.next_run_at = number, first, upcoming
    return run


def _kick_sender() -> None:
    def enqueue() -> None:
        from campaigns.tasks import kick_sender

        kick_sender()

    transaction.on_commit(enqueue)


def campaign_start(*, campaign: Campaign) -> Campaign:
    """draft -> running now, or -> scheduled for a future `startAt`."""
    if campaign.status != CampaignStatus.DRAFT:
        raise InvalidState(campaign, "start", [CampaignStatus.DRAFT])
    schedule = parse_schedule(campaign.schedule)
    _check_startable(campaign, schedule)
    now = timezone.now()
    if schedule.recurring and schedule.start_at is not None and now - schedule.start_at > MISSED_GRACE:
        raise InvalidInput("schedule.startAt", "has passed: give the recurrence a future start (or none: now)")
    with transaction.atomic():
        if schedule.start_at is not None and schedule.start_at > now:
            _move(campaign, "start", [CampaignStatus.DRAFT], CampaignStatus.SCHEDULED, next_run_at=schedule.start_at)
            campaign_fire_schedule(campaign)
            return campaign
        _move(campaign, "start", [CampaignStatus.DRAFT], CampaignStatus.RUNNING)
        _begin_run(campaign, schedule.start_at or now)
        _kick_sender()
    logger.info("campaign %s started", campaign.pk)
    return campaign


def campaign_fire(*, campaign_id: Any, now: datetime | None = None) -> bool:
    """A scheduled occurrence is due: scheduled -> running with a new run. Idempotent (the minute sweep and the
    one-off schedule may both fire it); a campaign that can no longer start becomes `failed` with the reason."""
    now = now or timezone.now()
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
        return False
    if campaign.next_run_at is None or campaign.next_run_at > now:
        return False
    schedule = parse_schedule(campaign.schedule)
    plan = catch_up(schedule, campaign.started_at or campaign.next_run_at, _occurrence_index(campaign), now)
    if plan.skipped and not _skip(campaign, plan, now):
        return False
    try:
        _check_startable(campaign, schedule)
    except ApiError as exc:
        reason = f"{exc.details.get('field', '')}: {exc.message}"[:500]
        Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.SCHEDULED).update(
            status=CampaignStatus.FAILED, status_reason=reason, finished_at=now, next_run_at=None
        )
        logger.warning("campaign %s failed to start: %s", campaign.pk, reason)
        return False
    with transaction.atomic():
        moved = Campaign.objects.filter(
            pk=campaign.pk, status=CampaignStatus.SCHEDULED, next_run_at=campaign.next_run_at
        ).update(status=CampaignStatus.RUNNING, updated_at=now)
        if not moved:
            return False
        campaign.status = CampaignStatus.RUNNING
        _begin_run(campaign, campaign.next_run_at)
        _kick_sender()
    logger.info("campaign %s occurrence %s fired", campaign.pk, campaign.run_count)
    return True


def _skip(campaign: Campaign, plan: CatchUp, now: datetime) -> bool:
    """Record the occurrences missed by more than the grace, and move on to the one due now (answers True: fire
    it) or to the next one (scheduled for it, or completed when the recurrence ended meanwhile)."""
    assert campaign.next_run_at is not None
    first = campaign.started_at or campaign.next_run_at  # the recurrence's anchor, even when its first was skipped
    fields: dict[str, Any] = {
        "skipped_occurrences": campaign.skipped_occurrences + plan.skipped,
        "last_skipped_at": plan.last_skipped,
        "started_at": first,
        "next_run_at": plan.at,
        "updated_at": now,
    }
    if plan.at is None:
        fields |= {"status": CampaignStatus.COMPLETED, "finished_at": now}
    moved = Campaign.objects.filter(
        pk=campaign.pk, status=CampaignStatus.SCHEDULED, next_run_at=campaign.next_run_at
    ).update(**fields)
    if not moved:  # fired or changed meanwhile
        return False
    logger.warning("campaign %s: %s missed occurrences skipped", campaign.pk, plan.skipped)
    for name, value in fields.items():
        setattr(campaign, name, value)
    if not plan.due:
        campaign_fire_schedule(campaign)
    return plan.due


# What the database answers while it is busy or away (deadlock, lock or statement timeout, a dropped connection):
# retried later, never the campaign's failure. The API answers the same errors 503.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.details.get('field', '')}: {exc.message}"
    # the exception's text may describe internals: the log has it, the merchant reads its kind
    return f"the occurrence could not be started ({type(exc).__name__}); support has the details"


def campaign_fire_or_fail(*, campaign_id: Any, now: datetime | None = None) -> bool:
    """`campaign_fire` with its failure kept to this campaign: the sweep and the sender loop fire every merchant's
    campaigns, so one that raises (a row an older version wrote, a query the database refuses) must not stop the
    others. Its work is rolled back to a savepoint and it becomes `failed` with the reason."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            return campaign_fire(campaign_id=campaign_id, now=now)
    except TRANSIENT_DATABASE_ERRORS:  # not the campaign's fault: it stays scheduled, the next sweep fires it
        logger.warning(
            "campaign %s: a transient database error; it will fire on the next sweep", campaign_id, exc_info=True
        )
        return False
    except Exception as exc:
        logger.exception("campaign %s could not fire", campaign_id)
        failed = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SCHEDULED).update(
            status=CampaignStatus.FAILED,
            status_reason=_failure_reason(exc)[:500],
            finished_at=now,
            next_run_at=None,
            updated_at=now,
        )
        if failed:
            from django_q.models import Schedule as QSchedule

            QSchedule.objects.filter(name=f"campaign:{campaign_id}").delete()
        return False


def _move(campaign: Campaign, action: str, allowed: Iterable[str], to: str, **fields: Any) -> None:
    """The state change as a conditional UPDATE from the allowed states: whoever moves it first wins, the other
    gets InvalidState with the state it found."""
    allowed = list(allowed)
    moved = Campaign.objects.filter(pk=campaign.pk, status__in=allowed).update(
        status=to, updated_at=timezone.now(), **fields
    )
    if not moved:
        campaign.refresh_from_db()
        raise InvalidState(campaign, action, allowed)
    campaign.status = to
    for name, value in fields.items():
        setattr(campaign, name, value)


def campaign_pause(*, campaign: Campaign) -> Campaign:
    """running -> paused: the sender claims nothing of a paused campaign (a send already in flight completes)."""
    _move(campaign, "pause", [CampaignStatus.RUNNING], CampaignStatus.PAUSED)
    return campaign


def campaign_resume(*, campaign: Campaign) -> Campaign:
    _move(campaign, "resume", [CampaignStatus.PAUSED], CampaignStatus.RUNNING)
    _kick_sender()
    return campaign


def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Any unfinished state -> cancelled: what was not sent is skipped (reason `cancelled`)."""
    now = timezone.now()
    with transaction.atomic():
        _move(campaign, "cancel", CANCELLABLE, CampaignStatus.CANCELLED, finished_at=now, next_run_at=None)
        Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SKIPPED, reason="cancelled", lease_until=None
        )
        CampaignRun.objects.filter(campaign=campaign, finished_at__isnull=True).update(
            status="cancelled", finished_at=now
        )
        _unschedule(campaign)
    campaign.refresh_from_db()
    return campaign
