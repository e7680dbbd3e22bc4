"""The history from before the conversation events and answered waits were kept (contacts migration 0016), read
again from the Message rows; and a closing counted for whoever held the conversation when it was closed."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from contacts.models import Conversation, ConversationEvent, ConversationResponse
from contacts.services.conversations import conversation_close
from tests.analytics_helpers import dm, event, report
from tests.factories import ContactFactory, ConversationFactory, UserFactory

pytestmark = pytest.mark.django_db
backfill = importlib.import_module("contacts.migrations.0016_history_backfill")
T = datetime(2026, 1, 5, 10, tzinfo=UTC)


def run_backfill() -> None:
    backfill.assignees(apps, SimpleNamespace(connection=connection))
    backfill.waits(apps, SimpleNamespace(connection=connection))


def reply(row: Conversation, at: datetime, origin: str, status: str = "sent", user=None) -> None:
    message = dm(row, at, inbound=False, status=status)
    type(message).objects.filter(pk=message.pk).update(origin=origin, sent_by=user)


def test_waits_before_the_cutover_are_read_again_from_the_messages_once():
    agent = UserFactory.create()
    row = ConversationFactory.create(contact=ContactFactory.create(), started_at=T, last_message_at=T)
    event(row, "opened", T)
    dm(row, T)  # waits
    dm(row, T + timedelta(minutes=1))  # a follow-up: the same wait
    reply(row, T + timedelta(minutes=5), "staff", user=agent)  # 300 s
    dm(row, T + timedelta(hours=1))
    reply(row, T + timedelta(hours=1, minutes=1), "campaign")  # does not answer
    reply(row, T + timedelta(hours=1, minutes=2), "staff", status="failed")  # never sent: does not answer
    reply(row, T + timedelta(hours=1, minutes=3), "bot")  # 180 s
    dm(row, T + timedelta(hours=2))
    event(row, "closed", T + timedelta(hours=3), opened_at=T)  # ends the wait unanswered
    event(row, "reopened", T + timedelta(hours=4))
    reply(row, T + timedelta(hours=4, minutes=1), "x_app")  # nothing waits
    dm(row, T + timedelta(hours=5))
    reply(row, T + timedelta(hours=5, minutes=10), "x_app")  # 600 s
    dm(row, T + timedelta(hours=6))
    reply(row, timezone.now() + timedelta(hours=2), "staff")  # answered after the cutover: written as it happened
    # the cutover: when migration 0011 was applied (here: after the rows above, before the last answer)
    MigrationRecorder.Migration.objects.filter(app="contacts", name="0011_conversation_history").update(
        applied=timezone.now() + timedelta(hours=1)
    )
    run_backfill()
    found = list(ConversationResponse.objects.order_by("waited_since").values_list("seconds", "responder", "user_id"))
    assert found == [(300, "staff", agent.pk), (180, "bot", None), (600, "x_app", None)]
    run_backfill()  # again: nothing twice
    assert ConversationResponse.objects.count() == 3


def test_a_closing_counts_for_who_held_the_conversation_then(history):
    other = UserFactory.create(merchant=history.merchant)
    talk = history.conversations["cat"]
    Conversation.objects.filter(pk=talk.pk).update(assigned_to=history.agent)
    conversation_close(conversation=Conversation.objects.get(pk=talk.pk))
    Conversation.objects.filter(pk=talk.pk).update(assigned_to=other)  # handed to someone else afterwards
    closing = ConversationEvent.objects.filter(conversation=talk, kind="closed").get()
    assert closing.assignee_id == history.agent.pk
    today = timezone.now().date().isoformat()
    listed = report(history, "conversations", startDate=today, endDate=today)["byAssignee"]
    rows = {row["userId"]: row for row in listed}
    assert rows[str(history.agent.pk)]["closed"] == 1
    assert rows.get(str(other.pk), {"closed": 0})["closed"] == 0


def test_closings_from_before_get_the_assignee_known_now(history):
    talk = history.conversations["ann"]
    ConversationEvent.objects.filter(conversation=talk, kind="closed").update(assignee=None)
    run_backfill()
    assert ConversationEvent.objects.get(conversation=talk, kind="closed").assignee_id == history.agent.pk
