"""Day boundaries across a daylight-saving change, and week and month buckets of the conversation, campaign and
automation series, read over the API."""

from __future__ import annotations

import pytest

from tests.analytics_helpers import REPORTS as BASE
from tests.analytics_helpers import contact, nonzero, report, utc
from tests.campaign_helpers import FreshTokenClient

pytestmark = pytest.mark.django_db


def test_a_day_that_springs_forward_in_new_york_is_23_hours(history):
    # New York: EST (UTC-5) until 2:00 on March 8 2026, then EDT (UTC-4)
    contact(history, "before", utc(3, 8, 4, 30))  # 23:30 on March 7, local
    contact(history, "early", utc(3, 8, 6, 30))  # 01:30 EST on March 8
    contact(history, "late", utc(3, 9, 3, 30))  # 23:30 EDT on March 8
    contact(history, "after", utc(3, 9, 4, 30))  # 00:30 on March 9
    body = report(history, "contacts", startDate="2026-03-08", endDate="2026-03-08", timezone="America/New_York")
    assert body["period"] == {
        "startDate": "2026-03-08T00:00:00-05:00",
        "endDate": "2026-03-08T23:59:59-04:00",
        "timezone": "America/New_York",
    }
    assert body["totals"]["new"] == 2
    assert body["series"] == [{"date": "2026-03-08", "new": 2, "active": 0}]


def test_week_and_month_buckets_of_the_other_series(history):
    hcm = {"startDate": "2026-01-01", "endDate": "2026-01-31", "timezone": "Asia/Ho_Chi_Minh"}
    weekly = report(history, "conversations", **hcm, groupBy="week")
    assert [row["date"] for row in weekly["series"]] == [
        "2025-12-29", "2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26",
    ]  # fmt: skip
    assert nonzero(weekly["series"], "opened") == {"2026-01-05": 3}
    assert nonzero(weekly["series"], "closed") == {"2026-01-05": 1}
    assert nonzero(weekly["series"], "inbound") == {"2026-01-05": 3}
    monthly = report(history, "campaigns", startDate="2025-12-01", endDate="2026-01-31", groupBy="month")
    assert [(row["date"], row["sent"], row["opened"]) for row in monthly["series"]] == [
        ("2025-12-01", 1, 1),  # bob's send of December 30, opened on January 2: counted with its send
        ("2026-01-01", 2, 1),
    ]
    assert sum(row["sent"] for row in monthly["series"]) == monthly["totals"]["totalSent"]
    automation = report(history, "automation", startDate="2025-12-01", endDate="2026-01-31", groupBy="month")
    assert [(row["date"], row["started"], row["completed"]) for row in automation["series"]] == [
        ("2025-12-01", 1, 1),
        ("2026-01-01", 2, 1),
    ]
    assert automation["totalExecutions"] == 3 and automation["byStatus"]["completed"] == 2


def test_a_csv_error_keeps_the_envelope(history):
    response = FreshTokenClient(history.agent).get(f"{BASE}/contacts", {"format": "csv", "groupBy": "year"})
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    assert response.json()["details"]["field"] == "groupBy"
