"""The back office's analytics page (issue 15): staff choose a merchant, a range, a time zone and an account, and see
contacts per day, inbound and outbound DMs per day, the response-time distribution, the campaign funnel and the
flows' completion, each an SVG chart drawn here (analytics/charts.py) with its numbers in a table beside it. The
numbers are the API's: the same report functions (analytics/reports.py) make both."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from analytics import charts, reports, rolled
from analytics import definitions as d
from analytics.models import Dashboard
from analytics.params import report_scope
from mktx.accounts.models import Account
from mktx.api.errors import ApiError
from mktx.iam.models import Merchant
from mktx.service_admin import ViewOnlyAdmin
from mktx.tallies.services import tallies_freshness

FUNNEL = (
    ("sent", "totalSent"),
    ("delivered", "delivered"),
    ("opened", "opened"),
    ("clicked", "clicked"),
    ("replied", "replied"),
)


def dashboard_context(query: Any, merchant: Merchant) -> dict[str, Any]:
    """The page's charts and tables for one merchant and the query's range (the API's parameters)."""
    scope = report_scope(SimpleNamespace(query_params=query), merchant_id=merchant.pk)  # type: ignore[arg-type]
    contacts, conversations = reports.contacts(scope), reports.conversations(scope)
    campaigns, automation = reports.campaigns(scope), reports.automation(scope)
    # the headline cards from the reports above (their numbers are the overview's): no second reading of the rows
    overview = {
        "period": contacts["period"],
        "contacts": contacts["totals"],
        "conversations": {
            **conversations["totals"],
            "averageResponseTime": conversations["responseTime"]["average"],
        },
        "campaigns": {
            "totalMessagesSent": campaigns["totals"]["totalSent"],
            "active": d.campaigns_active_and_completed(scope)[0],
        },
        "automation": {"totalExecutions": automation["totalExecutions"], "activeFlows": automation["activeFlows"]},
    }
    labels = [row["date"] for row in contacts["series"]]
    messages = conversations["series"]
    distribution = list(conversations["responseTime"]["distribution"].items())
    funnel = [(label, int(campaigns["totals"][key])) for label, key in FUNNEL]
    flows = [(flow["name"], round(100 * flow["completionRate"])) for flow in automation["flows"]]
    return {
        "scope": scope,
        "rollup": {**tallies_freshness(), "read": rolled.usable(scope)},
        "overview": overview,
        "sections": [
            {
                "title": "Contacts",
                "chart": mark_safe(  # noqa: S308 - charts.py escapes every text it writes
                    charts.bars_over_time(
                        "New and active contacts",
                        labels,
                        [
                            charts.Series("new", [row["new"] for row in contacts["series"]]),
                            charts.Series("active", [row["active"] for row in contacts["series"]]),
                        ],
                    )
                ),
                "columns": ["date", "new", "active"],
                "rows": [[row["date"], row["new"], row["active"]] for row in contacts["series"]],
            },
            {
                "title": "Direct messages",
                "chart": mark_safe(  # noqa: S308
                    charts.bars_over_time(
                        "Inbound and outbound DMs",
                        labels,
                        [
                            charts.Series("inbound", [row["inbound"] for row in messages]),
                            charts.Series("outbound", [row["outbound"] for row in messages]),
                        ],
                    )
                ),
                "columns": ["date", "inbound", "outbound"],
                "rows": [[row["date"], row["inbound"], row["outbound"]] for row in messages],
            },
            {
                "title": "Response time",
                "chart": mark_safe(charts.horizontal_bars("Answered waits by response time", distribution)),  # noqa: S308
                "columns": ["waited", "answers"],
                "rows": [list(pair) for pair in distribution],
            },
            {
                "title": "Campaign funnel",
                "chart": mark_safe(charts.horizontal_bars("Campaign funnel", funnel)),  # noqa: S308
                "columns": ["step", "deliveries"],
                "rows": [list(pair) for pair in funnel],
            },
            {
                "title": "Flow completion",
                "chart": mark_safe(charts.horizontal_bars("Executions completed", flows, unit="%")),  # noqa: S308
                "columns": ["flow", "executions", "completed", "failed", "completion"],
                "rows": [
                    [f["name"], f["executions"], f["completed"], f["failed"], f"{round(100 * f['completionRate'])}%"]
                    for f in automation["flows"]
                ],
            },
        ],
    }


@admin.register(Dashboard)
class DashboardAdmin(ViewOnlyAdmin):
    """The admin's "Analytics dashboard" entry: its list page is the dashboard."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):  # staff without "Can view analytics dashboard": every merchant's
            raise PermissionDenied
        merchants = list(Merchant.objects.order_by("name")[:500])
        chosen = next(
            (m for m in merchants if str(m.pk) == request.GET.get("merchant")), merchants[0] if merchants else None
        )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Analytics",
            "opts": self.model._meta,
            "merchants": merchants,
            "merchant": chosen,
            "accounts": list(Account.objects.filter(merchant=chosen).order_by("username")) if chosen else [],
            "query": request.GET,
        }
        if chosen is not None:
            try:
                context.update(dashboard_context(request.GET, chosen))
            except ApiError as exc:  # a parameter the form let through wrong: said on the page, as the API would
                context["error"] = exc.message
        return TemplateResponse(request, "admin/analytics/dashboard.html", context)
