"""The batch memo (mktx/memo.py): a drain's batch of inbound events reads the account an event is for, the
merchant's AI settings and the flows a trigger looks for once, not once per event; a revocation in the batch is
seen by the events after it; outside a batch every read is fresh."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatbot.ai_settings import ai_settings_of, ai_settings_update
from contacts.models import Message
from mktx.memo import batch_memo, memo_forget, memoized
from tests.factories import AccountFactory
from webhooks_app import services
from webhooks_app.models import InboundEvent
from webhooks_app.parser import split_payload

pytestmark = pytest.mark.django_db

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x_events.json").read_text())
SHOP_ID = "4337869213"


def test_a_read_is_memoized_only_inside_a_batch_and_nested_blocks_share_it():
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return len(reads)

    assert (memoized("k", read), memoized("k", read)) == (1, 2)  # outside a batch: fresh every time
    with batch_memo():
        assert memoized("k", read) == 3
        with batch_memo():
            assert memoized("k", read) == 3  # the outer block's memo
        assert memoized("k", read) == 3
        memo_forget("k")
        assert memoized("k", read) == 4
    assert memoized("k", read) == 5


def test_the_ai_settings_are_fresh_outside_a_batch(merchant):
    assert ai_settings_of(merchant_id=merchant.pk).enabled is False
    ai_settings_update(merchant_id=merchant.pk, changes={"enabled": True})
    assert ai_settings_of(merchant_id=merchant.pk).enabled is True


def _store(n: int, *, revoke_after: int | None = None) -> None:
    for i in range(n):
        payload = copy.deepcopy(FIXTURES["direct_message"])
        payload["direct_message_events"][0]["id"] = str(800_000 + i)
        services._insert_new(split_payload(payload), None)
        if revoke_after == i:
            services._insert_new(split_payload(FIXTURES["revoke"]), None)


def _queries_on(context: CaptureQueriesContext, table: str) -> int:
    return sum(f'FROM "{table}"' in q["sql"] for q in context.captured_queries)


def test_a_drain_reads_the_account_the_ai_settings_and_the_flows_once_per_batch(merchant, settings):
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")
    _store(6)
    with CaptureQueriesContext(connection) as context:
        assert services.inbound_events_drain() == {"processed": 6}
    assert Message.objects.filter(direction="inbound").count() == 6
    assert _queries_on(context, "accounts_account") == 1
    assert _queries_on(context, "chatbot_aisettings") == 1
    assert _queries_on(context, "automation_flowversion") == 2  # message_received, and the new contact's trigger


def test_events_after_a_revocation_in_the_same_batch_are_ignored(merchant, settings):
    settings.MKTX_INBOUND_DRAIN_GRACE = 0
    AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")
    _store(4, revoke_after=1)  # two DMs, the revocation, two more DMs
    assert services.inbound_events_drain() == {"processed": 3, "ignored": 2}
    after = InboundEvent.objects.filter(kind="direct_message").order_by("pk")[2:]
    assert [e.status_reason for e in after] == ["no active connected account for this X user"] * 2


def test_a_batch_does_not_remember_that_an_x_user_had_no_account(merchant):
    from webhooks_app.parser import parse_event

    (raw,) = split_payload(copy.deepcopy(FIXTURES["direct_message"]))
    event = parse_event(raw.kind, raw.payload)
    with batch_memo():
        assert services._account_for(event) is None
        account = AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID)
        assert services._account_for(event) == account
