"""A campaign's audience: the union of its segments, checked before a start (every placeholder has a source for
every recipient, counted in SQL) and frozen into a run's deliveries with one `INSERT ... SELECT`."""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryStatus
from campaigns.placeholders import placeholders_check
from campaigns.schedule import Schedule
from campaigns.templating import placeholders, texts_of
from contacts.models import Contact, Segment
from contacts.segments import compile_conditions
from contacts.selectors import contacts_of
from mktx.api.errors import InvalidInput


def audience_of(campaign: Campaign, segments: list[Segment] | None = None) -> QuerySet[Contact]:
    """The union of the campaign's segments: one query, each contact once however many segments it is in."""
    segments = segments if segments is not None else list(campaign.segments.all())
    contacts = contacts_of(campaign.merchant_id)
    if not segments:
        return contacts.none()
    parts = [compile_conditions(merchant_id=campaign.merchant_id, conditions=s.conditions) for s in segments]
    return contacts.filter(reduce(operator.or_, parts))


def check_startable(campaign: Campaign, schedule: Schedule) -> None:
    """No segments, no template, or a placeholder that some recipients have no value for: 400 naming it (with how
    many recipients lack it)."""
    segments = list(campaign.segments.all())
    if not segments:
        raise InvalidInput("segmentIds", "the campaign has no segments")
    template = campaign.template
    if template is None:
        raise InvalidInput("templateId", "the campaign's template was deleted")
    used = placeholders(*texts_of(template.content, template.options or [], template.card or {}))
    placeholders_check(audience_of(campaign, segments), used=used, variables=campaign.variables)
    if schedule.end_at is not None and not schedule.recurring and schedule.end_at <= timezone.now():
        raise InvalidInput("schedule.endAt", "is already past")


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
