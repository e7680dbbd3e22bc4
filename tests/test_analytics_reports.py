"""Every number of every report over a known history (tests/analytics_helpers.py), exactly: January 2026 in UTC and in
Asia/Ho_Chi_Minh, day, week and month buckets across the time-zone boundary, one account, CSV, and another merchant's
rows never counted."""

from __future__ import annotations

import pytest

from tests.analytics_helpers import REPORTS as BASE
from tests.analytics_helpers import nonzero, report
from tests.campaign_helpers import FreshTokenClient

pytestmark = pytest.mark.django_db
JANUARY = {"startDate": "2026-01-01", "endDate": "2026-01-31"}
HCM = {**JANUARY, "timezone": "Asia/Ho_Chi_Minh"}


def test_the_overview(history):
    body = report(history, "overview", **JANUARY)
    assert body["period"] == {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-01-31T23:59:59Z", "timezone": "UTC"}
    assert body["contacts"] == {"total": 4, "new": 3, "active": 2, "optedOut": 1}
    assert body["conversations"] == {
        "total": 3,  # dan's (open since December), ann's (closed and reopened: once), cat's
        "opened": 3,
        "open": 3,
        "closed": 1,
        "averageResponseTime": "7m 0s",
        "averageResponseTimeSeconds": 420,
    }
    assert body["campaigns"] == {"active": 0, "completed": 1, "totalMessagesSent": 2}
    assert body["automation"] == {"activeFlows": 1, "totalExecutions": 2}
    assert body["messages"] == {"inbound": 3, "outbound": 2}
    assert body["ai"] == {"answers": 2, "fallbacks": 1, "escalated": 1}


def test_the_overview_in_another_time_zone_moves_the_day_boundaries(history):
    body = report(history, "overview", **HCM)
    assert body["period"]["startDate"] == "2026-01-01T00:00:00+07:00"
    assert body["period"]["endDate"] == "2026-01-31T23:59:59+07:00"
    assert body["contacts"] == {"total": 3, "new": 2, "active": 2, "optedOut": 1}  # bob's Jan 31 18:00 is February


def test_the_contacts_report_by_day(history):
    body = report(history, "contacts", **JANUARY)
    assert body["totals"] == {"total": 4, "new": 3, "active": 2, "optedOut": 1}
    assert body["bySource"] == {"inbound_message": 2, "new_follower": 1, "api": 0, "import": 0}
    assert len(body["series"]) == 31 and body["series"][0] == {"date": "2026-01-01", "new": 0, "active": 0}
    assert nonzero(body["series"], "new") == {"2026-01-04": 1, "2026-01-10": 1, "2026-01-31": 1}
    assert nonzero(body["series"], "active") == {"2026-01-05": 1, "2026-01-06": 1, "2026-01-10": 1}
    assert sum(row["new"] for row in body["series"]) == body["totals"]["new"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # ann is Sunday Jan 4 in UTC (the week of Dec 29) and Monday Jan 5 in Ho Chi Minh
        ({**JANUARY, "groupBy": "week"}, {"2025-12-29": 1, "2026-01-05": 1, "2026-01-26": 1}),
        ({**HCM, "groupBy": "week"}, {"2026-01-05": 2}),
        # bob is January 31 in UTC and February 1 in Ho Chi Minh
        ({"startDate": "2026-01-01", "endDate": "2026-02-28", "groupBy": "month"}, {"2026-01-01": 3, "2026-02-01": 1}),
        (
            {"startDate": "2026-01-01", "endDate": "2026-02-28", "groupBy": "month", "timezone": "Asia/Ho_Chi_Minh"},
            {"2026-01-01": 2, "2026-02-01": 2},
        ),
    ],
)
def test_week_and_month_buckets_across_the_time_zone_boundary(history, params, expected):
    body = report(history, "contacts", **params)
    assert nonzero(body["series"], "new") == expected
    assert body["series"][0]["date"] == ("2025-12-29" if params["groupBy"] == "week" else "2026-01-01")
    assert sum(row["new"] for row in body["series"]) == body["totals"]["new"]


def test_the_conversations_report(history):
    body = report(history, "conversations", **JANUARY)
    assert body["totals"] == {"total": 3, "opened": 3, "closed": 1, "open": 3}
    assert body["responseTime"] == {
        "count": 3,
        "average": "7m 0s",
        "averageSeconds": 420,
        "medianSeconds": 300,
        "p90Seconds": 900,
        "human": {"count": 2, "average": "10m 0s", "averageSeconds": 600, "medianSeconds": 300, "p90Seconds": 900},
        "bot": {"count": 1, "average": "1m 0s", "averageSeconds": 60, "medianSeconds": 60, "p90Seconds": 60},
        "distribution": {"0-1h": 3, "1-4h": 0, "4-8h": 0, "8-24h": 0, "over 24h": 0},
    }
    assert body["resolutionTime"] == {
        "count": 1,
        "average": "1d 0h",
        "averageSeconds": 86400,
        "medianSeconds": 86400,
        "p90Seconds": 86400,
    }
    assert body["byAssignee"] == [
        {"userId": str(history.agent.pk), "conversations": 1, "closed": 1, "averageSeconds": 600}
    ]
    series = body["series"]
    assert nonzero(series, "opened") == {"2026-01-05": 1, "2026-01-07": 1, "2026-01-10": 1}
    assert nonzero(series, "closed") == {"2026-01-06": 1}
    assert nonzero(series, "inbound") == {"2026-01-05": 1, "2026-01-06": 1, "2026-01-10": 1}
    assert nonzero(series, "outbound") == {"2026-01-05": 1, "2026-01-10": 1}  # the failed DM is not counted


def test_the_campaigns_report(history):
    body = report(history, "campaigns", **JANUARY)
    metrics = {
        "totalSent": 2,
        "delivered": 1,
        "opened": 1,
        "clicked": 1,
        "replied": 1,  # in February, but of a January send
        "failed": 1,
        "skipped": 0,
        "pending": 0,
        "openRate": 1.0,
        "clickRate": 1.0,
        "replyRate": 1.0,
        "deliveryRate": 0.5,
    }
    assert body["totals"] == metrics
    assert body["campaigns"] == [
        {"id": str(history.campaign.pk), "name": "January sale", "status": "completed", "metrics": metrics}
    ]
    assert [row for row in body["series"] if row["sent"]] == [
        {"date": "2026-01-05", "sent": 2, "delivered": 1, "opened": 1, "clicked": 1, "replied": 1}
    ]
    one = report(history, "campaigns", **JANUARY, campaignId=str(history.campaign.pk))
    assert one["totals"] == metrics and len(one["campaigns"]) == 1


def test_a_campaigns_whole_life_agrees_with_its_metrics(history):
    lifetime = report(
        history, "campaigns", startDate="2025-06-01", endDate="2026-03-31", campaignId=str(history.campaign.pk)
    )
    own = FreshTokenClient(history.agent).get(f"/api/v1/mkt-x/campaigns/{history.campaign.pk}/metrics").json()["data"]
    assert lifetime["totals"] == {key: own[key] for key in lifetime["totals"]}


def test_the_automation_report(history):
    body = report(history, "automation", **JANUARY)
    assert (body["activeFlows"], body["totalExecutions"]) == (1, 2)
    assert body["byStatus"] == {"running": 0, "completed": 1, "failed": 1, "cancelled": 0}
    assert body["flows"] == [
        {
            "id": str(history.flow.pk),
            "name": "Welcome",
            "executions": 2,
            "completed": 1,
            "failed": 1,
            "completionRate": 0.5,
            "nodes": [
                {"id": "a", "type": "add_tag", "entered": 2, "completed": 2, "failed": 0},
                {"id": "b", "type": "add_tag", "entered": 2, "completed": 1, "failed": 1},
                {"id": "c", "type": "end", "entered": 0, "completed": 0, "failed": 0},
            ],
        }
    ]
    assert nonzero(body["series"], "started") == {"2026-01-05": 1, "2026-01-06": 1}
    # a funnel per start day: ann's started Jan 5 and completed; bob's started in December
    assert nonzero(body["series"], "completed") == {"2026-01-05": 1}
    assert sum(row["completed"] for row in body["series"]) == body["byStatus"]["completed"]


def test_one_account_only(history):
    body = report(history, "overview", **JANUARY, accountId=str(history.accounts[1].pk))
    assert body["contacts"] == {"total": 1, "new": 1, "active": 1, "optedOut": 1}  # cat
    assert body["conversations"]["opened"] == 1 and body["conversations"]["averageResponseTimeSeconds"] == 60
    assert body["messages"] == {"inbound": 1, "outbound": 1}
    assert body["campaigns"]["totalMessagesSent"] == 1  # cat's failed send


def test_csv_answers_the_series(history):
    response = FreshTokenClient(history.agent).get(f"{BASE}/contacts", {**JANUARY, "groupBy": "week", "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == [
        "date,new,active",
        "2025-12-29,1,0",
        "2026-01-05,1,2",
        "2026-01-12,0,0",
        "2026-01-19,0,0",
        "2026-01-26,1,0",
    ]
    overview = FreshTokenClient(history.agent).get(f"{BASE}/overview", {**JANUARY, "format": "csv"})
    assert "contacts,total,4" in overview.content.decode().splitlines()


def test_another_merchant_sees_none_of_it(history):
    stranger = FreshTokenClient(history.owner)  # the history's owner: the stranger's rows are not there
    body = stranger.get(f"{BASE}/overview", JANUARY).json()["data"]
    assert body["contacts"]["total"] == 4 and body["campaigns"]["active"] == 0
    from tests.factories import UserFactory

    theirs = FreshTokenClient(UserFactory.create(merchant=history.stranger, role="owner"))
    other = theirs.get(f"{BASE}/overview", JANUARY).json()["data"]
    assert other["contacts"] == {"total": 1, "new": 1, "active": 1, "optedOut": 0}
    assert other["conversations"]["averageResponseTimeSeconds"] == 7
    assert other["ai"] == {"answers": 2, "fallbacks": 1, "escalated": 1}  # theirs only; ours: test_the_overview
    assert other["messages"] == {"inbound": 1, "outbound": 0} and other["campaigns"]["totalMessagesSent"] == 1
    for name, key in (("campaigns", "campaignId"), ("automation", "flowId")):
        mine = str(history.campaign.pk if key == "campaignId" else history.flow.pk)
        assert theirs.get(f"{BASE}/{name}", {**JANUARY, key: mine}).status_code == 404
    assert theirs.get(f"{BASE}/contacts", {**JANUARY, "accountId": str(history.accounts[0].pk)}).status_code == 404
