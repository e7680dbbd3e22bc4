"""A conversation's counters when a message is stored (contacts/services/conversations.py): one UPDATE per message,
the count up by one, `last_message_at` only ever forward, and the wait for a reply started by the first inbound
message and kept by the next ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.services.conversations import conversation_message_added
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


def test_each_message_counts_and_moves_the_last_message_time_only_forward():
    start = timezone.now()
    conversation = ConversationFactory.create(last_message_at=start, message_count=0)
    with CaptureQueriesContext(connection) as context:
        conversation_message_added(conversation_id=conversation.pk, at=start + timedelta(minutes=5), inbound=False)
    assert len(context.captured_queries) == 1
    conversation_message_added(conversation_id=conversation.pk, at=start + timedelta(minutes=1), inbound=False)
    conversation.refresh_from_db()
    assert conversation.message_count == 2
    assert conversation.last_message_at == start + timedelta(minutes=5)  # the older message did not move it back
    assert conversation.awaiting_reply_since is None  # the account's own messages start no wait


def test_the_first_inbound_message_starts_the_wait_and_later_ones_keep_it():
    start = timezone.now()
    conversation = ConversationFactory.create(last_message_at=start, message_count=0)
    conversation_message_added(conversation_id=conversation.pk, at=start + timedelta(minutes=2), inbound=True)
    conversation_message_added(conversation_id=conversation.pk, at=start + timedelta(minutes=3), inbound=True)
    conversation.refresh_from_db()
    assert conversation.awaiting_reply_since == start + timedelta(minutes=2)
    assert (conversation.message_count, conversation.last_message_at) == (2, start + timedelta(minutes=3))
