"""Every number analytics reports, each defined once here, as aggregate queries over the rows the other apps write
(this app writes nothing). A `Scope` is one merchant (one account with `accountId`) and a half-open range
[start, end) in a time zone. Series are counted by the bucket of the time each definition names; a count over the
range is the sum of its series, except the distinct counts (`active` contacts: a contact active on two days counts
on both days, and once in the range).

Contacts
- `total`: the merchant's contacts at the end of the range: first interaction before the end (a contact without
  one, made by the API or an import, counts from its creation).
- `new`: first interaction in the range; `bySource` splits them by how they came (`inbound_message`,
  `new_follower`, `api`, `import`).
- `active`: sent at least one DM in the range (distinct contacts of inbound DMs).
- `optedOut`: opted out now, since before the end of the range.

Conversations (contacts.ConversationEvent: each opening, reopening and closing)
- `opened`: openings and reopenings in the range; `closed`: closings in the range.
- `open`: open at the end of the range: open now, minus the openings since, plus the closings since (each
  conversation alternates between the two).
- `total`: the distinct conversations open at some time in the range: open at its start, or (re)opened in it (a
  conversation closed and reopened in the range counts once).
- response time (contacts.ConversationResponse): for each customer DM that waited for an answer (the first since
  the previous reply, or since the conversation was opened or reopened) in the range, the time to the first reply by
  staff, the merchant in X's app or the bot; campaign, flow and system DMs do not answer; a closing ends a wait
  unanswered. Mean, median and p90 (nearest rank: the value at rank ceil(p x n) in ascending order), in seconds and
  as "5m 30s"; `human` (staff and X's app) and `bot` apart.
- resolution time: for each closing in the range, the time from the opening (or reopening) it ends.
- `inbound`: customers' DMs received in the range; `outbound`: DMs the accounts sent in the range (any origin:
  staff, bot, campaigns, flows, system; those X accepted), each counted by when it was made to be sent (stored
  and handed to X, normally a moment before X accepts it; a send retried later keeps its first time).

Campaigns (the deliveries, counted with the definitions of campaigns/metrics.py that GET /campaigns/{id}/metrics
uses): the deliveries of the range are those sent (or refused) in it, and those made in it and not sent yet
(skipped, pending); each is counted by that time with what became of it since (opened, clicked, replied, whenever),
so a series is a funnel per send day and rates stay within 0-1. Over a range that holds a campaign's whole life, its
numbers are its metrics'.

Automation: executions started in the range (`totalExecutions`, `byStatus` by their status now; the series a funnel
per start day: `started`, and of them `completed` so far, so the series sums to `byStatus`), and per node the steps
started in the range (`entered`) and how they ended.

AI (chatbot): the bot's answers in the range (assistant turns), those the built-in engine gave in place of a
failing OpenAI engine (`fallbacks`), and the conversations handed to people in the range (`escalated`).

The overview's and the conversations report's largest counts are read from the rollup (analytics/rolled.py) when
it can answer: the same definitions, counted by the services as they write the rows.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from django.db import connections
from django.db.models import Aggregate, Avg, Count, F, IntegerField, Min, Q, QuerySet
from django.db.models.functions import Coalesce

from analytics.buckets import counts_by_bucket, counts_by_bucket_each
from analytics.params import Scope
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, Step, StepStatus
from campaigns.metrics import COUNTS, with_rates
from campaigns.models import ACTIVE_STATUSES, Campaign, CampaignStatus, Delivery
from chatbot.models import ChatTurn, TurnRole
from contacts.models import (
    Contact,
    ContactSource,
    Conversation,
    ConversationEvent,
    ConversationEventKind,
    ConversationResponse,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageOrigin,
    MessageStatus,
)

OPENINGS = (ConversationEventKind.OPENED, ConversationEventKind.REOPENED)
HUMAN = (MessageOrigin.STAFF, MessageOrigin.X_APP)


def in_range(field: str, scope: Scope) -> Q:
    return Q(**{f"{field}__gte": scope.start, f"{field}__lt": scope.end})


# --- contacts ---------------------------------------------------------------------------------------------------------


def contacts_of(scope: Scope) -> QuerySet[Contact]:
    rows = Contact.objects.filter(merchant_id=scope.merchant_id)
    return rows.filter(account_id=scope.account_id) if scope.account_id else rows


def contacts_total(scope: Scope) -> int:
    """Two indexed counts, not one with an OR (which reads the whole table)."""
    rows = contacts_of(scope)
    interacted = rows.filter(first_interaction_at__lt=scope.end).count()
    return interacted + rows.filter(first_interaction_at__isnull=True, created_at__lt=scope.end).count()


def contacts_new(scope: Scope) -> int:
    return contacts_of(scope).filter(in_range("first_interaction_at", scope)).count()


def contacts_new_by_bucket(scope: Scope) -> dict[date, int]:
    return counts_by_bucket(contacts_of(scope), "first_interaction_at", scope)


def contacts_new_by_source(scope: Scope) -> dict[str, int]:
    rows = (
        contacts_of(scope)
        .filter(in_range("first_interaction_at", scope))
        .values("source")
        .annotate(n=Count("pk"))
        .order_by()
    )
    found = {row["source"]: int(row["n"]) for row in rows}
    return {source: found.get(source, 0) for source in ContactSource.values}


def inbound_of(scope: Scope) -> QuerySet[Message]:
    return Message.objects.filter(account_id__in=scope.account_ids, direction=MessageDirection.INBOUND)


def contacts_active(scope: Scope) -> int:
    """The conversations DMed in the range, then their distinct contacts (a semi-join: no join row per message)."""
    dmed = inbound_of(scope).filter(in_range("created_at", scope)).values("conversation_id")
    rows = Conversation.objects.filter(pk__in=dmed)
    return int(rows.aggregate(n=Count("contact_id", distinct=True))["n"] or 0)


def contacts_active_by_bucket(scope: Scope) -> dict[date, int]:
    return counts_by_bucket(inbound_of(scope), "created_at", scope, count="conversation__contact_id", distinct=True)


def contacts_opted_out(scope: Scope) -> int:
    since = Q(opted_out_at__lt=scope.end) | Q(opted_out_at__isnull=True)
    return contacts_of(scope).filter(since, opted_out=True).count()


# --- conversations ----------------------------------------------------------------------------------------------------


def events_of(scope: Scope) -> QuerySet[ConversationEvent]:
    rows = ConversationEvent.objects.filter(merchant_id=scope.merchant_id)
    return rows.filter(account_id=scope.account_id) if scope.account_id else rows


def conversations_opened_closed_by_bucket(scope: Scope) -> tuple[dict[date, int], dict[date, int]]:
    counts = {"opened": Q(kind__in=OPENINGS), "closed": Q(kind=ConversationEventKind.CLOSED)}
    found = counts_by_bucket_each(events_of(scope), "at", scope, counts)
    return found["opened"], found["closed"]


def conversations_opened_not_open_before(scope: Scope) -> int:
    """The conversations (re)opened in the range that were not open at its start: those whose first event in the
    range is an opening (each conversation alternates, so one open at the start has a closing first)."""
    per_conversation = (
        events_of(scope)
        .filter(in_range("at", scope))
        .values("conversation_id")
        .annotate(
            first_opening=Min("at", filter=Q(kind__in=OPENINGS)),
            first_closing=Min("at", filter=Q(kind=ConversationEventKind.CLOSED)),
        )
        .filter(Q(first_closing__isnull=True) | Q(first_closing__gte=F("first_opening")), first_opening__isnull=False)
    )
    return per_conversation.count()


def conversations_total(scope: Scope, open_at_start: int) -> int:
    """The distinct conversations open at some time in the range: open at its start, or (re)opened in it."""
    return open_at_start + conversations_opened_not_open_before(scope)


def conversations_opened_closed(scope: Scope) -> tuple[int, int]:
    row = (
        events_of(scope)
        .filter(in_range("at", scope))
        .aggregate(
            opened=Count("pk", filter=Q(kind__in=OPENINGS)),
            closed=Count("pk", filter=Q(kind=ConversationEventKind.CLOSED)),
        )
    )
    return int(row["opened"] or 0), int(row["closed"] or 0)


def conversations_open_at_start_and_end(scope: Scope) -> tuple[int, int]:
    """Open at a time T: open now, minus the openings since T, plus the closings since T (each conversation
    alternates, and its status now is where its history ends). Recent bounds read few events."""
    open_now = Conversation.objects.filter(merchant_id=scope.merchant_id, status=ConversationStatus.OPEN)
    if scope.account_id:
        open_now = open_now.filter(account_id=scope.account_id)
    row = (
        events_of(scope)
        .filter(at__gte=scope.start)
        .aggregate(
            opened_start=Count("pk", filter=Q(kind__in=OPENINGS)),
            closed_start=Count("pk", filter=Q(kind=ConversationEventKind.CLOSED)),
            opened_end=Count("pk", filter=Q(kind__in=OPENINGS, at__gte=scope.end)),
            closed_end=Count("pk", filter=Q(kind=ConversationEventKind.CLOSED, at__gte=scope.end)),
        )
    )
    now = open_now.count()
    start = now - int(row["opened_start"] or 0) + int(row["closed_start"] or 0)
    end = now - int(row["opened_end"] or 0) + int(row["closed_end"] or 0)
    return max(0, start), max(0, end)


def responses_of(scope: Scope) -> QuerySet[ConversationResponse]:
    rows = ConversationResponse.objects.filter(merchant_id=scope.merchant_id).filter(in_range("waited_since", scope))
    return rows.filter(account_id=scope.account_id) if scope.account_id else rows


class PercentileDisc(Aggregate):
    """PostgreSQL's nearest-rank percentile (`percentile_disc`): the first value whose rank reaches p x n."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = IntegerField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


NO_STATS = {"count": 0, "average": None, "averageSeconds": None, "medianSeconds": None, "p90Seconds": None}


def _stats(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    n = int(row[f"{prefix}n"] or 0)
    if not n:
        return dict(NO_STATS)
    mean = round(float(row[f"{prefix}mean"]))
    return {
        "count": n,
        "average": duration_text(mean),
        "averageSeconds": mean,
        "medianSeconds": int(row[f"{prefix}median"]),
        "p90Seconds": int(row[f"{prefix}p90"]),
    }


def _stats_aggregates(field: str, prefix: str = "", where: Q | None = None) -> dict[str, Any]:
    """Count, mean and the nearest-rank median and p90 (PostgreSQL's percentile_disc) of `field`, as aggregates."""
    return {
        f"{prefix}n": Count("pk", filter=where),
        f"{prefix}mean": Avg(field, filter=where),
        f"{prefix}median": PercentileDisc(field, 0.5, filter=where),
        f"{prefix}p90": PercentileDisc(field, 0.9, filter=where),
    }


def duration_stats(rows: QuerySet[Any], field: str = "seconds") -> dict[str, Any]:
    """Mean, median and p90 of `field` over `rows`, nearest rank: one aggregate on PostgreSQL; on SQLite (no
    percentile there) an aggregate and one ordered pick per percentile."""
    if connections[rows.db].vendor == "postgresql":
        return _stats(rows.aggregate(**_stats_aggregates(field)))
    row = rows.aggregate(n=Count("pk"), mean=Avg(field))
    n = int(row["n"] or 0)
    if not n:
        return dict(NO_STATS)
    ordered = rows.order_by(field).values_list(field, flat=True)
    row["median"], row["p90"] = (ordered[max(0, math.ceil(p * n) - 1)] for p in (0.5, 0.9))
    return _stats(row)


def response_time(scope: Scope) -> dict[str, Any]:
    """All the answered waits of the range, and those answered by people (staff, X's app) and by the bot apart:
    one aggregate on PostgreSQL."""
    rows = responses_of(scope)
    if connections[rows.db].vendor == "postgresql":
        human, bot = Q(responder__in=HUMAN), Q(responder=MessageOrigin.BOT)
        row = rows.aggregate(
            **_stats_aggregates("seconds"),
            **_stats_aggregates("seconds", "human_", human),
            **_stats_aggregates("seconds", "bot_", bot),
        )
        return {**_stats(row), "human": _stats(row, "human_"), "bot": _stats(row, "bot_")}
    return {
        **duration_stats(rows),
        "human": duration_stats(rows.filter(responder__in=HUMAN)),
        "bot": duration_stats(rows.filter(responder=MessageOrigin.BOT)),
    }


# the back office's response-time distribution: (label, from seconds, to seconds), the upper bound excluded
RESPONSE_BANDS = (
    ("0-1h", 0, 3_600),
    ("1-4h", 3_600, 4 * 3_600),
    ("4-8h", 4 * 3_600, 8 * 3_600),
    ("8-24h", 8 * 3_600, 24 * 3_600),
    ("over 24h", 24 * 3_600, None),
)


def response_distribution(scope: Scope) -> dict[str, int]:
    """The answered waits of the range by how long they waited, in RESPONSE_BANDS (one query)."""

    def band(low: int, high: int | None) -> Q:
        return Q(seconds__gte=low) if high is None else Q(seconds__gte=low, seconds__lt=high)

    row = responses_of(scope).aggregate(
        **{f"b{i}": Count("pk", filter=band(low, high)) for i, (_, low, high) in enumerate(RESPONSE_BANDS)}
    )
    return {label: int(row[f"b{i}"] or 0) for i, (label, _, _) in enumerate(RESPONSE_BANDS)}


def response_time_average(scope: Scope) -> int | None:
    mean = responses_of(scope).aggregate(mean=Avg("seconds"))["mean"]
    return None if mean is None else round(float(mean))


def resolution_time(scope: Scope) -> dict[str, Any]:
    closings = events_of(scope).filter(in_range("at", scope), kind=ConversationEventKind.CLOSED, seconds__isnull=False)
    return duration_stats(closings)


def outbound_of(scope: Scope) -> QuerySet[Message]:
    return Message.objects.filter(
        account_id__in=scope.account_ids, direction=MessageDirection.OUTBOUND, status=MessageStatus.SENT
    )


def messages_outbound(scope: Scope) -> int:
    return outbound_of(scope).filter(in_range("created_at", scope)).count()


def messages_counts(scope: Scope) -> tuple[int, int]:
    return inbound_of(scope).filter(in_range("created_at", scope)).count(), messages_outbound(scope)


def messages_by_bucket(
    scope: Scope, *, inbound: bool = True, outbound: bool = True
) -> tuple[dict[date, int], dict[date, int]]:
    """The customers' DMs and the DMs sent per bucket (either left empty when not asked for)."""
    return (
        counts_by_bucket(inbound_of(scope), "created_at", scope) if inbound else {},
        counts_by_bucket(outbound_of(scope), "created_at", scope) if outbound else {},
    )


def duration_text(seconds: int | None) -> str | None:
    """ "5m 30s" as in the reference: the largest unit and the next one ("45s", "5m 0s", "2h 5m", "3d 4h")."""
    if seconds is None:
        return None
    seconds = max(0, int(seconds))
    units = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    for index, (name, size) in enumerate(units):
        if seconds >= size or name == "s":
            whole, rest = divmod(seconds, size)
            if name == "s":
                return f"{whole}s"
            next_name, next_size = units[index + 1]
            return f"{whole}{name} {rest // next_size}{next_name}"
    return "0s"  # pragma: no cover - the loop always returns


# --- campaigns --------------------------------------------------------------------------------------------------------

CAMPAIGN_METRICS = ("total_sent", "delivered", "opened", "clicked", "replied", "failed", "skipped", "pending")
CAMPAIGN_SERIES = {
    "sent": "total_sent",
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "replied": "replied",
}


def deliveries_of(scope: Scope, campaign_id: Any = None) -> QuerySet[Delivery]:
    """The deliveries of the range: sent (or refused) in it, or made in it and not sent yet (skipped, pending).
    `at` is that time, which the series buckets by."""
    rows = Delivery.objects.filter(campaign__merchant_id=scope.merchant_id)
    if scope.account_id:
        rows = rows.filter(account_id=scope.account_id)
    if campaign_id:
        rows = rows.filter(campaign_id=campaign_id)
    return rows.annotate(at=Coalesce("attempted_at", "created_at")).filter(in_range("at", scope))


def _campaign_counts() -> dict[str, Any]:
    return {name: Count("pk", filter=COUNTS[name]) for name in CAMPAIGN_METRICS}


def campaign_totals(scope: Scope, campaign_id: Any = None) -> dict[str, Any]:
    """The metrics' counts over the range's deliveries, with their rates (campaigns.metrics.with_rates)."""
    row = deliveries_of(scope, campaign_id).aggregate(**_campaign_counts())
    return with_rates({name: int(row[name] or 0) for name in CAMPAIGN_METRICS})


def campaign_totals_by_campaign(scope: Scope, campaign_id: Any = None) -> dict[Any, dict[str, Any]]:
    """The same per campaign, for the campaigns with deliveries in the range (one query)."""
    rows = deliveries_of(scope, campaign_id).values("campaign_id").annotate(**_campaign_counts()).order_by()
    return {row["campaign_id"]: with_rates({name: int(row[name] or 0) for name in CAMPAIGN_METRICS}) for row in rows}


def campaign_series(scope: Scope, campaign_id: Any = None) -> dict[str, dict[date, int]]:
    """Per bucket of `at`: the funnel of the deliveries sent then (how many of them were later opened, ...)."""
    counts = {column: COUNTS[metric] for column, metric in CAMPAIGN_SERIES.items()}
    return counts_by_bucket_each(deliveries_of(scope, campaign_id), "at", scope, counts)


def campaigns_active_and_completed(scope: Scope) -> tuple[int, int]:
    """Campaigns scheduled, running or paused now; campaigns that completed in the range."""
    row = Campaign.objects.filter(merchant_id=scope.merchant_id).aggregate(
        active=Count("pk", filter=Q(status__in=ACTIVE_STATUSES)),
        completed=Count("pk", filter=Q(status=CampaignStatus.COMPLETED) & in_range("finished_at", scope)),
    )
    return int(row["active"] or 0), int(row["completed"] or 0)


# --- automation -------------------------------------------------------------------------------------------------------


def executions_of(scope: Scope, flow_id: Any = None) -> QuerySet[Execution]:
    rows = Execution.objects.filter(merchant_id=scope.merchant_id)
    if scope.account_id:
        rows = rows.filter(contact__account_id=scope.account_id)
    return rows.filter(flow_id=flow_id) if flow_id else rows


def executions_by_status(scope: Scope, flow_id: Any = None) -> dict[str, int]:
    """The executions started in the range, by their status now."""
    rows = executions_of(scope, flow_id).filter(in_range("started_at", scope)).values("status").annotate(n=Count("pk"))
    found = {row["status"]: int(row["n"]) for row in rows.order_by()}
    return {status: found.get(status, 0) for status in ExecutionStatus.values}


def executions_started(scope: Scope) -> int:
    return executions_of(scope).filter(in_range("started_at", scope)).count()


def executions_series(scope: Scope, flow_id: Any = None) -> dict[str, dict[date, int]]:
    counts = {"started": Q(), "completed": Q(status=ExecutionStatus.COMPLETED)}
    return counts_by_bucket_each(executions_of(scope, flow_id), "started_at", scope, counts)


def flows_active(scope: Scope) -> int:
    return Flow.objects.filter(merchant_id=scope.merchant_id, status=FlowStatus.ACTIVE).count()


def executions_per_flow(scope: Scope, flow_id: Any = None) -> dict[Any, dict[str, int]]:
    rows = (
        executions_of(scope, flow_id)
        .filter(in_range("started_at", scope))
        .values("flow_id")
        .annotate(
            executions=Count("pk"),
            completed=Count("pk", filter=Q(status=ExecutionStatus.COMPLETED)),
            failed=Count("pk", filter=Q(status=ExecutionStatus.FAILED)),
        )
        .order_by()
    )
    return {row["flow_id"]: {k: int(row[k]) for k in ("executions", "completed", "failed")} for row in rows}


def steps_per_node(scope: Scope, flow_id: Any = None) -> dict[tuple[Any, str], dict[str, int]]:
    """Per (flow, node): the steps started in the range, and of them the completed (or skipped past) and failed."""
    steps = Step.objects.filter(execution__merchant_id=scope.merchant_id).filter(in_range("started_at", scope))
    if scope.account_id:
        steps = steps.filter(execution__contact__account_id=scope.account_id)
    if flow_id:
        steps = steps.filter(execution__flow_id=flow_id)
    rows = (
        steps.values("execution__flow_id", "node_id")
        .annotate(
            entered=Count("pk"),
            completed=Count("pk", filter=Q(status__in=[StepStatus.COMPLETED, StepStatus.SKIPPED])),
            failed=Count("pk", filter=Q(status=StepStatus.FAILED)),
        )
        .order_by()
    )
    return {
        (row["execution__flow_id"], row["node_id"]): {k: int(row[k]) for k in ("entered", "completed", "failed")}
        for row in rows
    }


# --- the chatbot ------------------------------------------------------------------------------------------------------


def ai_activity(scope: Scope) -> dict[str, int]:
    turns = ChatTurn.objects.filter(session__merchant_id=scope.merchant_id, role=TurnRole.ASSISTANT)
    conversations = Conversation.objects.filter(merchant_id=scope.merchant_id)
    if scope.account_id:
        turns = turns.filter(session__conversation__account_id=scope.account_id)
        conversations = conversations.filter(account_id=scope.account_id)
    row = turns.filter(in_range("created_at", scope)).aggregate(
        answers=Count("pk"), fallbacks=Count("pk", filter=~Q(fallback_reason=""))
    )
    escalated = conversations.filter(in_range("ai_escalated_at", scope)).count()
    return {"answers": int(row["answers"] or 0), "fallbacks": int(row["fallbacks"] or 0), "escalated": escalated}
