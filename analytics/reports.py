"""The five reports of CONTRACT.md "Analytics", put together from analytics/definitions.py: each a handful of
aggregate queries, series zero-filled over the range, and every total that has a series the sum of that series."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count

from analytics import definitions as d
from analytics import rolled
from analytics.buckets import series, total
from analytics.params import Scope, period
from automation.models import Flow
from campaigns.metrics import with_rates
from campaigns.models import Campaign
from campaigns.serializers import MetricsRates
from chatbot.models import AISettings
from contacts.models import Conversation, ConversationEventKind, MessageOrigin


def _head(scope: Scope) -> dict[str, Any]:
    return {"period": period(scope), "groupBy": scope.group_by}


def raw_counts(scope: Scope) -> dict[str, Any]:
    """The overview's counts of analytics/rolled.py, read from the rows."""
    opened, closed = d.conversations_opened_closed(scope)
    open_at_start, open_at_end = d.conversations_open_at_start_and_end(scope)
    inbound, outbound = d.messages_counts(scope)
    return {
        "contacts_total": d.contacts_total(scope),
        "contacts_new": d.contacts_new(scope),
        "contacts_active": d.contacts_active(scope),
        "opened": opened,
        "closed": closed,
        "open_at_start": open_at_start,
        "open_at_end": open_at_end,
        "inbound": inbound,
        "outbound": outbound,
        "total_sent": d.campaign_totals(scope)["total_sent"],
    }


def overview(scope: Scope, *, rollup: bool = True) -> dict[str, Any]:
    """Plain counts, the largest of them from the rollup when it can answer (analytics/rolled.py); the same
    numbers from the rows otherwise (`rollup=False` always)."""
    counts = rolled.overview_counts(scope) if rollup and rolled.usable(scope) else raw_counts(scope)
    average = d.response_time_average(scope)
    active, completed = d.campaigns_active_and_completed(scope)
    report: dict[str, Any] = {
        **_head(scope),
        "contacts": {
            "total": counts["contacts_total"],
            "new": counts["contacts_new"],
            "active": counts["contacts_active"],
            "optedOut": d.contacts_opted_out(scope),
        },
        "conversations": {
            "total": d.conversations_total(scope, counts["open_at_start"]),
            "opened": counts["opened"],
            "open": counts["open_at_end"],
            "closed": counts["closed"],
            "averageResponseTime": d.duration_text(average),
            "averageResponseTimeSeconds": average,
        },
        "campaigns": {"active": active, "completed": completed, "totalMessagesSent": counts["total_sent"]},
        "automation": {"activeFlows": d.flows_active(scope), "totalExecutions": d.executions_started(scope)},
        "messages": {"inbound": counts["inbound"], "outbound": counts["outbound"]},
    }
    ai = d.ai_activity(scope)
    if any(ai.values()) or AISettings.objects.filter(merchant_id=scope.merchant_id, enabled=True).exists():
        report["ai"] = ai
    return report


def contacts(scope: Scope) -> dict[str, Any]:
    new, active = d.contacts_new_by_bucket(scope), d.contacts_active_by_bucket(scope)
    return {
        **_head(scope),
        "totals": {
            "total": d.contacts_total(scope),
            "new": total(new.values()),
            "active": d.contacts_active(scope),
            "optedOut": d.contacts_opted_out(scope),
        },
        "bySource": d.contacts_new_by_source(scope),
        "series": series(scope, {"new": new, "active": active}),
    }


def conversations(scope: Scope, *, rollup: bool = True) -> dict[str, Any]:
    """Its openings, closings and customers' DMs from the rollup when it can answer (the rows otherwise)."""
    if rollup and rolled.usable(scope):
        found = rolled.conversation_series(scope)
        opened, closed, inbound = found["opened"], found["closed"], found["inbound"]
        open_at_start, open_at_end = rolled.open_at_start_and_end(scope)
    else:
        opened, closed = d.conversations_opened_closed_by_bucket(scope)
        open_at_start, open_at_end = d.conversations_open_at_start_and_end(scope)
        inbound = d.messages_by_bucket(scope, outbound=False)[0]
    outbound = d.messages_by_bucket(scope, inbound=False)[1]
    return {
        **_head(scope),
        "totals": {
            "total": d.conversations_total(scope, open_at_start),
            "opened": total(opened.values()),
            "closed": total(closed.values()),
            "open": open_at_end,
        },
        "responseTime": {**d.response_time(scope), "distribution": d.response_distribution(scope)},
        "resolutionTime": d.resolution_time(scope),
        "byAssignee": by_assignee(scope),
        "series": series(scope, {"opened": opened, "closed": closed, "inbound": inbound, "outbound": outbound}),
    }


def by_assignee(scope: Scope) -> list[dict[str, Any]]:
    """Per person (now assigned to a conversation, or who closed or answered in the range): the conversations they
    hold that were active in the range (started before its end, a message since its start), the closings of the
    range of conversations assigned to them at the time, and the mean response time of their own replies to waits
    of the range."""
    held = Conversation.objects.filter(
        merchant_id=scope.merchant_id,
        assigned_to__isnull=False,
        started_at__lt=scope.end,
        last_message_at__gte=scope.start,
    )
    if scope.account_id:
        held = held.filter(account_id=scope.account_id)
    counts = {
        row["assigned_to_id"]: int(row["n"]) for row in held.values("assigned_to_id").annotate(n=Count("pk")).order_by()
    }
    closings = d.events_of(scope).filter(
        d.in_range("at", scope), kind=ConversationEventKind.CLOSED, assignee__isnull=False
    )
    closed = {
        row["assignee_id"]: int(row["n"]) for row in closings.values("assignee_id").annotate(n=Count("pk")).order_by()
    }
    replies = d.responses_of(scope).filter(responder=MessageOrigin.STAFF, user__isnull=False)
    speed = {
        row["user_id"]: round(float(row["mean"]))
        for row in replies.values("user_id").annotate(mean=Avg("seconds")).order_by()
        if row["mean"] is not None
    }
    people = sorted(set(counts) | set(closed) | set(speed), key=str)
    return [
        {
            "userId": str(user_id),
            "conversations": counts.get(user_id, 0),
            "closed": closed.get(user_id, 0),
            "averageSeconds": speed.get(user_id),
        }
        for user_id in people
    ]


def campaigns(scope: Scope, campaign_id: Any = None) -> dict[str, Any]:
    per_campaign = d.campaign_totals_by_campaign(scope, campaign_id)
    ids = [campaign_id] if campaign_id else list(per_campaign)
    rows = Campaign.objects.filter(merchant_id=scope.merchant_id, pk__in=ids).values("id", "name", "status")
    empty = with_rates(dict.fromkeys(d.CAMPAIGN_METRICS, 0))
    listed = [
        {
            "id": str(row["id"]),
            "name": row["name"],
            "status": row["status"],
            "metrics": MetricsRates(per_campaign.get(row["id"], empty)).data,
        }
        for row in sorted(rows, key=lambda row: (row["name"], str(row["id"])))
    ]
    columns = d.campaign_series(scope, campaign_id)
    return {
        **_head(scope),
        "totals": MetricsRates(d.campaign_totals(scope, campaign_id)).data,
        "campaigns": listed,
        "series": series(scope, columns),
    }


def automation(scope: Scope, flow_id: Any = None) -> dict[str, Any]:
    columns = d.executions_series(scope, flow_id)
    per_flow = d.executions_per_flow(scope, flow_id)
    per_node = d.steps_per_node(scope, flow_id)
    ids = {flow_id} if flow_id else set(per_flow) | {flow for flow, _ in per_node}
    flows = Flow.objects.filter(merchant_id=scope.merchant_id, pk__in=ids).values("id", "name", "nodes")
    listed = []
    for flow in sorted(flows, key=lambda row: (row["name"], str(row["id"]))):
        counts = per_flow.get(flow["id"], {"executions": 0, "completed": 0, "failed": 0})
        known = [(str(n.get("id")), str(n.get("type"))) for n in flow["nodes"] or [] if isinstance(n, dict)]
        seen = {node_id for node_id, _ in known}
        known += [(node, "") for (fid, node) in sorted(per_node, key=str) if fid == flow["id"] and node not in seen]
        zero = {"entered": 0, "completed": 0, "failed": 0}
        listed.append(
            {
                "id": str(flow["id"]),
                "name": flow["name"],
                **counts,
                "completionRate": round(counts["completed"] / counts["executions"], 2) if counts["executions"] else 0.0,
                "nodes": [
                    {"id": node_id, "type": node_type, **per_node.get((flow["id"], node_id), zero)}
                    for node_id, node_type in known
                ],
            }
        )
    return {
        **_head(scope),
        "activeFlows": d.flows_active(scope),
        "totalExecutions": total(columns["started"].values()),
        "byStatus": d.executions_by_status(scope, flow_id),
        "flows": listed,
        "series": series(scope, columns),
    }
