"""The back office's analytics page: the charts (SVG drawn on the server) and the tables beside them hold the API's
numbers for the same merchant, range, time zone and account; a wrong parameter is said on the page."""

from __future__ import annotations

import re

import pytest

from analytics.definitions import response_distribution
from analytics.params import Scope
from tests.analytics_helpers import answered, report, utc
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PAGE = "/admin/analytics/dashboard/"
JANUARY = {"startDate": "2026-01-01", "endDate": "2026-01-31", "timezone": "Asia/Ho_Chi_Minh"}


@pytest.fixture
def staff(client):
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


def bars(html: str, section: str) -> list[dict[str, str]]:
    block = html.split(f'data-section="{section}"', 1)[1].split('class="analytics-section"', 1)[0]
    return [
        dict(re.findall(r'data-(series|label|value)="([^"]*)"', tag))
        for tag in re.findall(r'<rect class="bar"[^>]*>', block)
    ]


def test_the_charts_hold_the_apis_numbers(staff, history):
    response = staff.get(PAGE, {"merchant": str(history.merchant.pk), **JANUARY})
    assert response.status_code == 200
    html = response.content.decode()
    contacts, conversations = report(history, "contacts", **JANUARY), report(history, "conversations", **JANUARY)
    campaigns, automation = report(history, "campaigns", **JANUARY), report(history, "automation", **JANUARY)
    drawn = {(b["series"], b["label"]): int(b["value"]) for b in bars(html, "Contacts")}
    assert drawn == {(k, row["date"]): row[k] for row in contacts["series"] for k in ("new", "active")}
    drawn = {(b["series"], b["label"]): int(b["value"]) for b in bars(html, "Direct messages")}
    assert drawn == {(k, row["date"]): row[k] for row in conversations["series"] for k in ("inbound", "outbound")}
    bands = {b["label"]: int(b["value"]) for b in bars(html, "Response time")}
    assert bands == conversations["responseTime"]["distribution"]
    funnel = {b["label"]: int(b["value"]) for b in bars(html, "Campaign funnel")}
    assert funnel == {"sent": 2, "delivered": 1, "opened": 1, "clicked": 1, "replied": 1}
    assert funnel["sent"] == campaigns["totals"]["totalSent"]
    assert {b["label"]: int(b["value"]) for b in bars(html, "Flow completion")} == {
        flow["name"]: round(100 * flow["completionRate"]) for flow in automation["flows"]
    }
    overview = report(history, "overview", **JANUARY)
    assert f'id="card-contacts-total">{overview["contacts"]["total"]}<' in html
    assert f'id="card-conversations-open">{overview["conversations"]["open"]}<' in html
    assert f'id="card-response">{overview["conversations"]["averageResponseTime"]}<' in html
    assert f'id="card-campaigns">{overview["campaigns"]["totalMessagesSent"]}<' in html
    assert f'id="card-executions">{overview["automation"]["totalExecutions"]}<' in html
    assert "<table>" in html and "<td>2026-01-05</td>" in html  # the numbers beside each chart
    assert "<script" not in html.split('id="cards"', 1)[1]  # charts without a script


def test_one_account_and_a_wrong_parameter(staff, history):
    account = history.accounts[1]
    html = staff.get(PAGE, {"merchant": str(history.merchant.pk), **JANUARY, "accountId": str(account.pk)}).content
    assert b'id="card-contacts-total">1<' in html
    wrong = staff.get(PAGE, {"merchant": str(history.merchant.pk), "timezone": "Nowhere/Land"})
    assert wrong.status_code == 200 and b"timezone: must be an IANA time zone" in wrong.content


def test_the_page_is_for_staff_only_and_those_allowed_to_view_it(client, history):
    from django.contrib.auth.models import Permission

    assert client.get(PAGE).status_code == 302  # to the admin's login
    staff = UserFactory.create(is_staff=True)
    client.force_login(staff)
    assert client.get(PAGE).status_code == 403  # staff, but not allowed to see every merchant's figures
    staff.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(type(staff).objects.get(pk=staff.pk))
    assert client.get(PAGE, {"merchant": str(history.merchant.pk)}).status_code == 200


def test_the_response_bands(history):
    talk = history.conversations["ann"]
    for seconds in (3_599, 3_600, 4 * 3_600, 8 * 3_600 - 1, 24 * 3_600):
        answered(talk, utc(2, 3), seconds, "staff")
    from zoneinfo import ZoneInfo

    scope = Scope(
        history.merchant.pk, tuple(a.pk for a in history.accounts), None, utc(2, 1), utc(2, 28), ZoneInfo("UTC")
    )
    assert response_distribution(scope) == {"0-1h": 1, "1-4h": 1, "4-8h": 2, "8-24h": 0, "over 24h": 1}
