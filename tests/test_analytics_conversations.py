"""Conversation analytics over a history made by the real paths (the inbound path, the outbound path to the X
sandbox, closing and reopening): the response-time facts and the opening history they write, each number of the
report asserted exactly and recomputed from the raw Message rows by an independent reading of the definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from contacts.models import (
    Conversation,
    ConversationEvent,
    ConversationResponse,
    Message,
    MessageOrigin,
)
from contacts.services.contacts import XProfile
from contacts.services.conversations import conversation_close, conversation_reopen
from contacts.services.inbound import dm_record
from contacts.services.outbound import message_send
from tests.campaign_helpers import FreshTokenClient

pytestmark = pytest.mark.django_db
REPORT = "/api/v1/mkt-x/analytics/conversations"
DAY = datetime(2027, 3, 1, tzinfo=UTC)  # the clock fixture's day (CLOCK_START is 09:00 on it)
_ids = count(970_000_000_000_000_001)


def customer_dm(clock: Any, shop: dict[str, Any], person: dict[str, Any], text: str, at: datetime) -> Message:
    clock.move_to(at)  # received as it is sent, as a webhook is
    recorded = dm_record(
        account=shop["account"],
        x_event_id=str(next(_ids)),
        sender_id=person["id"],
        recipient_id=shop["id"],
        text=text,
        sent_at=at,
        profiles={person["id"]: XProfile(id=person["id"], username=person["username"], name=person["name"])},
    )
    assert recorded is not None
    return recorded.message


def reply(conversation: Conversation, origin: str, user: Any = None) -> Message:
    return message_send(
        conversation=Conversation.objects.get(pk=conversation.pk),
        content=f"a {origin} DM",
        origin=origin,
        sent_by_id=getattr(user, "pk", None),
        marketing=origin == MessageOrigin.CAMPAIGN,
    )


def waits_from_messages(conversation: Conversation) -> list[tuple[int, str]]:
    """The definition read again from the raw rows: each customer DM that waits (the first since the previous
    answer, or since an opening), answered by the first staff, X-app or bot DM after it; a closing drops the wait."""
    events = list(ConversationEvent.objects.filter(conversation=conversation).values_list("kind", "at"))
    messages = list(Message.objects.filter(conversation=conversation).values_list("origin", "created_at", "sent_at"))
    timeline = sorted(
        [(at, "event", kind) for kind, at in events]
        + [(sent or created, "message", origin) for origin, created, sent in messages]
    )
    found, waiting = [], None
    for at, what, kind in timeline:
        if what == "event":
            waiting = None if kind == "closed" else waiting
        elif kind == MessageOrigin.CUSTOMER:
            waiting = waiting or at
        elif kind in (MessageOrigin.STAFF, MessageOrigin.X_APP, MessageOrigin.BOT) and waiting is not None:
            found.append((int((at - waiting).total_seconds()), kind))
            waiting = None
    return found


def test_response_and_resolution_times_through_the_real_paths(clock, sandbox, shop, jane, owner):
    conversation = Conversation.objects.get(contact=jane["contact"])  # jane's "Hello shop", 4 days ago
    clock.move_to(DAY.replace(hour=9))
    reply(conversation, MessageOrigin.STAFF, owner)  # answers the 4-day-old wait: outside the range below
    customer_dm(clock, shop, jane, "where is my parcel?", DAY.replace(hour=10))
    clock.shift(timedelta(minutes=5))
    reply(conversation, MessageOrigin.STAFF, owner)  # 300 s, staff
    customer_dm(clock, shop, jane, "and the invoice?", DAY.replace(hour=11))
    customer_dm(clock, shop, jane, "hello??", DAY.replace(hour=11, minute=1))  # a follow-up: the same wait
    clock.move_to(DAY.replace(hour=11, minute=3))
    reply(conversation, MessageOrigin.BOT)  # 180 s, the bot
    customer_dm(clock, shop, jane, "one more thing", DAY.replace(hour=12))
    clock.move_to(DAY.replace(hour=12, minute=1))
    reply(conversation, MessageOrigin.CAMPAIGN)  # a campaign DM does not answer
    clock.move_to(DAY.replace(hour=12, minute=10))
    reply(conversation, MessageOrigin.STAFF, owner)  # 600 s, staff
    customer_dm(clock, shop, jane, "thanks, bye", DAY.replace(hour=13))
    clock.move_to(DAY.replace(hour=14))
    conversation_close(conversation=Conversation.objects.get(pk=conversation.pk))  # the wait ends unanswered
    clock.move_to(DAY.replace(hour=15))
    conversation_reopen(conversation=Conversation.objects.get(pk=conversation.pk))
    customer_dm(clock, shop, jane, "sorry, one last question", DAY.replace(hour=16))
    clock.move_to(DAY.replace(hour=16, minute=10))
    reply(conversation, MessageOrigin.STAFF, owner)  # 600 s after the reopening's first DM, not days

    facts = list(ConversationResponse.objects.filter(waited_since__gte=DAY).values_list("seconds", "responder"))
    assert facts == [(300, "staff"), (180, "bot"), (600, "staff"), (600, "staff")]
    assert waits_from_messages(conversation)[1:] == facts  # the first is the wait from 4 days before
    kinds = list(ConversationEvent.objects.filter(conversation=conversation).values_list("kind", "seconds"))
    started = Conversation.objects.get(pk=conversation.pk).started_at
    assert kinds == [
        ("opened", None),
        ("closed", int((DAY.replace(hour=14) - started).total_seconds())),
        ("reopened", None),
    ]

    body = FreshTokenClient(owner).get(REPORT, {"startDate": "2027-03-01", "endDate": "2027-03-01"}).json()["data"]
    assert body["responseTime"] == {
        "count": 4,
        "average": "7m 0s",
        "averageSeconds": 420,
        "medianSeconds": 300,  # nearest rank: ceil(0.5 x 4) = the 2nd of 180, 300, 600, 600
        "p90Seconds": 600,
        "human": {"count": 3, "average": "8m 20s", "averageSeconds": 500, "medianSeconds": 600, "p90Seconds": 600},
        "bot": {"count": 1, "average": "3m 0s", "averageSeconds": 180, "medianSeconds": 180, "p90Seconds": 180},
        "distribution": {"0-1h": 4, "1-4h": 0, "4-8h": 0, "8-24h": 0, "over 24h": 0},
    }
    # one conversation: open at the start, closed and reopened (one opening), open at the end
    assert body["totals"] == {"total": 1, "opened": 1, "closed": 1, "open": 1}
    resolution = body["resolutionTime"]
    assert resolution["count"] == 1 and resolution["averageSeconds"] == int(
        (DAY.replace(hour=14) - started).total_seconds()
    )
    # nobody is assigned; the owner answered three waits of the range, 500 s on average
    assert body["byAssignee"] == [{"userId": str(owner.pk), "conversations": 0, "closed": 0, "averageSeconds": 500}]
    day = body["series"][0]
    # jane's first DM came in at 09:00 (the fixture), then six
    assert (day["date"], day["opened"], day["closed"], day["inbound"]) == ("2027-03-01", 1, 1, 7)
    assert day["outbound"] == 6  # 4 staff DMs, the bot's, the campaign's
    overview = (
        FreshTokenClient(owner)
        .get("/api/v1/mkt-x/analytics/overview", {"startDate": "2027-03-01", "endDate": "2027-03-01"})
        .json()["data"]
    )
    assert overview["conversations"]["averageResponseTime"] == "7m 0s"
    assert overview["conversations"]["averageResponseTimeSeconds"] == 420
    assert overview["messages"] == {"inbound": 7, "outbound": 6}


def test_a_reply_from_xs_app_answers_a_wait_as_a_person(clock, sandbox, shop, jane, owner):
    conversation = Conversation.objects.get(contact=jane["contact"])
    reply(conversation, MessageOrigin.STAFF, owner)  # answers the fixture's wait, 4 days back
    customer_dm(clock, shop, jane, "is it in stock?", DAY.replace(hour=10))
    clock.move_to(DAY.replace(hour=10, minute=4))
    echo = dm_record(  # the merchant answered in X's own app: the service sees it only as X's echo
        account=shop["account"],
        x_event_id=str(next(_ids)),
        sender_id=shop["id"],
        recipient_id=jane["id"],
        text="yes, in stock",
        sent_at=DAY.replace(hour=10, minute=4),
        profiles={},
    )
    assert echo is not None and echo.message.origin == MessageOrigin.X_APP
    assert list(ConversationResponse.objects.filter(waited_since__gte=DAY).values_list("seconds", "responder")) == [
        (240, "x_app")
    ]
    body = FreshTokenClient(owner).get(REPORT, {"startDate": "2027-03-01", "endDate": "2027-03-01"}).json()["data"]
    assert body["responseTime"]["human"]["count"] == 1 and body["responseTime"]["human"]["averageSeconds"] == 240
    assert body["responseTime"]["bot"]["count"] == 0
    assert body["byAssignee"] == []  # X's app is nobody of the merchant's staff
