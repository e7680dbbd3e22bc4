"""`GET /analytics/{overview,contacts,conversations,campaigns,automation}` (CONTRACT.md "Analytics"): every member of
the merchant may read them; `format=csv` answers the report's series as CSV (errors keep the JSON envelope)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import reports
from analytics.params import Scope, report_scope
from automation.models import Flow
from campaigns.models import Campaign
from mktx.api.errors import NotFoundError
from mktx.api.params import query_uuid
from mktx.api.viewsets import NIL_MERCHANT

TAGS = ["analytics"]


def _param(name: str, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.QUERY, description=description, **kwargs)


COMMON = [
    _param("startDate", "YYYY-MM-DD (local midnight) or an ISO 8601 datetime; default: 29 days before endDate"),
    _param("endDate", "YYYY-MM-DD (the day included) or an ISO 8601 datetime; default: today"),
    _param("timezone", "IANA time zone of the day boundaries and buckets; default UTC"),
    _param("accountId", "Only this account of the merchant's"),
    _param("groupBy", "Series buckets", enum=["day", "week", "month"]),
    _param("format", "json (default) or csv: the series as CSV", enum=["json", "csv"]),
]


def csv_response(name: str, report: dict[str, Any]) -> HttpResponse:
    """The series as CSV (`date` first); a report without one (the overview) as `section,key,value` rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    rows = report.get("series")
    if rows is not None:
        columns = list(rows[0]) if rows else ["date"]
        writer.writerow(columns)
        writer.writerows([row[column] for column in columns] for row in rows)
    else:
        writer.writerow(["section", "key", "value"])
        for section, values in report.items():
            if isinstance(values, dict):
                writer.writerows([section, key, "" if value is None else value] for key, value in values.items())
            else:
                writer.writerow(["", section, values])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="analytics-{name}.csv"'
    return response


class ReportNegotiation(DefaultContentNegotiation):
    """`format` is the report's own parameter here (json or csv), not DRF's renderer override: JSON envelopes
    always, and the CSV is an answer of its own."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class ReportView(APIView):
    """One report: the scope from the query, then `build(scope, request)`."""

    name = ""
    dates_required = False
    content_negotiation_class = ReportNegotiation

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, request: Request) -> Response | HttpResponse:
        merchant_id = getattr(request.user, "merchant_id", None) or NIL_MERCHANT
        scope = report_scope(request, merchant_id=merchant_id, dates_required=self.dates_required)
        report = self.build(scope, request)
        if scope.format == "csv":
            return csv_response(self.name, report)
        return Response(report)


def _owned(request: Request, name: str, model: Any, merchant_id: uuid.UUID) -> uuid.UUID | None:
    wanted = query_uuid(request, name)
    if wanted is not None and not model.objects.filter(pk=wanted, merchant_id=merchant_id).exists():
        raise NotFoundError(f"{model._meta.verbose_name.capitalize()} not found", details={name: str(wanted)})
    return wanted


def _schema(summary: str, *extra: OpenApiParameter) -> Any:
    return extend_schema(summary=summary, tags=TAGS, parameters=COMMON + list(extra), responses=OpenApiTypes.OBJECT)


class OverviewView(ReportView):
    name, dates_required = "overview", True

    @_schema("Get overview analytics")
    def get(self, request: Request) -> Response | HttpResponse:
        return super().get(request)

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        return reports.overview(scope)


class ContactsView(ReportView):
    name = "contacts"

    @_schema("Get contact analytics")
    def get(self, request: Request) -> Response | HttpResponse:
        return super().get(request)

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        return reports.contacts(scope)


class ConversationsView(ReportView):
    name = "conversations"

    @_schema("Get conversation analytics")
    def get(self, request: Request) -> Response | HttpResponse:
        return super().get(request)

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        return reports.conversations(scope)


class CampaignsView(ReportView):
    name = "campaigns"

    @_schema("Get campaign analytics", _param("campaignId", "Only this campaign"))
    def get(self, request: Request) -> Response | HttpResponse:
        return super().get(request)

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        return reports.campaigns(scope, _owned(request, "campaignId", Campaign, scope.merchant_id))


class AutomationView(ReportView):
    name = "automation"

    @_schema("Get automation analytics", _param("flowId", "Only this flow"))
    def get(self, request: Request) -> Response | HttpResponse:
        return super().get(request)

    def build(self, scope: Scope, request: Request) -> dict[str, Any]:
        return reports.automation(scope, _owned(request, "flowId", Flow, scope.merchant_id))
