"""The analytics parameters: every malformed one is a 400 VALIDATION_ERROR naming it, another merchant's ids are
404, the defaults (the last 30 days, UTC, by day), datetimes, and the end day included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.campaign_helpers import FreshTokenClient
from tests.factories import AccountFactory, MerchantFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/mkt-x/analytics"
REPORTS = ("overview", "contacts", "conversations", "campaigns", "automation")


@pytest.fixture
def api(owner):
    return FreshTokenClient(owner)


@pytest.mark.parametrize("report", REPORTS)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"startDate": "2026-13-01", "endDate": "2026-01-31"}, "startDate"),
        ({"startDate": "yesterday", "endDate": "2026-01-31"}, "startDate"),
        ({"startDate": "2026-01-01", "endDate": "2026-02-30"}, "endDate"),
        ({"startDate": "2026-02-01", "endDate": "2026-01-31"}, "endDate"),
        ({"startDate": "2025-01-01", "endDate": "2026-01-31"}, "endDate"),  # over 366 days
        ({"startDate": "2026-01-01", "endDate": "2026-01-31", "timezone": "Mars/Olympus"}, "timezone"),
        ({"startDate": "2026-01-01", "endDate": "2026-01-31", "timezone": "localtime"}, "timezone"),
        ({"startDate": "2026-01-01", "endDate": "2026-01-31", "groupBy": "hour"}, "groupBy"),
        ({"startDate": "2026-01-01", "endDate": "2026-01-31", "format": "xml"}, "format"),
        ({"startDate": "2026-01-01", "endDate": "2026-01-31", "accountId": "not-a-uuid"}, "accountId"),
        ({"startDate": "9999-12-01", "endDate": "9999-12-31"}, "endDate"),  # beyond what a date holds
        ({"startDate": "2026-01-01", "endDate": "9999-12-31T23:59:59.999999"}, "endDate"),
        ({"startDate": "0001-01-01", "endDate": "0001-01-31", "timezone": "Asia/Tokyo"}, "startDate"),
        ({"startDate": "0001-01-01T00:00:00+05:00", "endDate": "2026-01-31"}, "startDate"),
    ],
)
def test_a_malformed_parameter_is_a_400_naming_it(api, report, params, field):
    response = api.get(f"{BASE}/{report}", params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and body["details"]["field"] == field


@pytest.mark.parametrize("missing", ["startDate", "endDate"])
def test_the_overview_needs_both_dates(api, missing):
    params = {"startDate": "2026-01-01", "endDate": "2026-01-31"}
    del params[missing]
    response = api.get(f"{BASE}/overview", params)
    assert response.status_code == 400 and response.json()["details"]["field"] == missing


def test_the_other_reports_default_to_the_last_30_days_in_utc_by_day(api):
    body = api.get(f"{BASE}/contacts").json()["data"]
    today = datetime.now(UTC).date()
    assert body["groupBy"] == "day" and body["period"]["timezone"] == "UTC"
    assert [row["date"] for row in body["series"]] == [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]


def test_a_range_of_366_days_is_allowed_and_datetimes_are_read_as_given(api):
    assert api.get(f"{BASE}/contacts", {"startDate": "2024-01-01", "endDate": "2024-12-31"}).status_code == 200
    body = api.get(
        f"{BASE}/contacts",
        {"startDate": "2026-01-01T10:00:00+07:00", "endDate": "2026-01-02T09:30:00", "timezone": "Asia/Ho_Chi_Minh"},
    ).json()["data"]
    assert body["period"] == {
        "startDate": "2026-01-01T10:00:00+07:00",
        "endDate": "2026-01-02T09:30:00+07:00",  # a naive datetime is in the report's time zone
        "timezone": "Asia/Ho_Chi_Minh",
    }
    assert [row["date"] for row in body["series"]] == ["2026-01-01", "2026-01-02"]


def test_another_merchants_account_campaign_or_flow_is_404(api):
    from automation.models import Flow
    from campaigns.models import Campaign

    other = MerchantFactory.create()
    theirs = {
        "contacts": ("accountId", AccountFactory.create(merchant=other).pk),
        "campaigns": ("campaignId", Campaign.objects.create(merchant=other, name="x").pk),
        "automation": ("flowId", Flow.objects.create(merchant=other, name="x", trigger_type="manual").pk),
    }
    for report, (name, pk) in theirs.items():
        response = api.get(f"{BASE}/{report}", {name: str(pk)})
        assert response.status_code == 404 and response.json()["code"] == "RESOURCE_NOT_FOUND", report


def test_agents_read_analytics_and_strangers_do_not(agent, client):
    assert FreshTokenClient(agent).get(f"{BASE}/contacts").status_code == 200
    assert client.get(f"{BASE}/contacts").status_code == 401
