"""contacts.services.outbound.OutboundBatch, over real HTTP against the sandbox: many DMs stored in one transaction
under the caps of message_send, sent one by one, recorded in one transaction; what was never sent withdrawn as if
never stored; X's echo before the record counted once; an earlier message of a key answered, not sent again; an
account whose tokens cannot be read refused as a whole."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Sum

from contacts.models import Contact, Conversation, Message
from contacts.services.inbound import dm_record
from contacts.services.outbound import SendSkipped
from contacts.services.outbound_batch import OutboundBatch, OutboundDM
from contacts.services.quota import quota_state
from mktx.accounts.models import Account
from mktx.api.errors import RateLimited
from tests.campaign_helpers import connect, customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(api, sandbox):
    sandbox.limits(dm15m=1000, dm24h=100_000)
    return connect(api, sandbox)


@pytest.fixture
def fans(sandbox, shop) -> list[Conversation]:
    people = [customer(sandbox, shop, f"batch_fan_{i}") for i in range(5)]
    return [Conversation.objects.select_related("account", "contact").get(contact=p["contact"]) for p in people]


def batch_of(fans: list[Conversation], key: str = "k") -> OutboundBatch:
    return OutboundBatch(
        [
            OutboundDM(conversation=c, content=f"Sale for fan {i}", origin="campaign", idempotency_key=f"{key}:{i}")
            for i, c in enumerate(fans)
        ]
    )


def sent_at_x(sandbox: Any, shop: dict[str, Any]) -> list[str]:
    return sorted(dm["text"] for dm in sandbox.dms() if dm["senderId"] == shop["id"])


def counted(fans: list[Conversation]) -> tuple[int, int]:
    """(messages_sent over the fans' contacts, message_count over their conversations)."""
    contacts = Contact.objects.filter(pk__in=[c.contact_id for c in fans]).aggregate(n=Sum("messages_sent"))["n"]
    conversations = Conversation.objects.filter(pk__in=[c.pk for c in fans]).aggregate(n=Sum("message_count"))["n"]
    return contacts or 0, conversations or 0


def test_what_was_sent_is_recorded_and_what_was_not_is_withdrawn_with_its_counts(sandbox, shop, fans):
    contacts_before, conversations_before = counted(fans)
    # given a batch of five DMs stored at once
    batch = batch_of(fans)
    batch.prepare()
    assert Message.objects.filter(origin="campaign", status="pending").count() == 5
    assert quota_state(shop["account"].pk).used == 5
    # when only the first two are sent before the caller stops (a send window closing, say)
    for dm in batch.dms[:2]:
        batch.send(dm)
    batch.record()
    # then those two are sent, at X and here, and the other three are gone with their counts
    assert sent_at_x(sandbox, shop) == ["Sale for fan 0", "Sale for fan 1"]
    messages = Message.objects.filter(origin="campaign")
    assert sorted(messages.values_list("content", "status")) == [("Sale for fan 0", "sent"), ("Sale for fan 1", "sent")]
    assert all(m.twitter_message_id and m.sent_at for m in messages)
    assert quota_state(shop["account"].pk).used == 2
    assert counted(fans) == (contacts_before + 2, conversations_before + 2)
    assert [dm.message is None for dm in batch.dms] == [False, False, True, True, True]


def test_the_caps_apply_dm_after_dm_inside_the_batch(sandbox, shop, fans, settings):
    # given an account with room for three more DMs today
    settings.MKTX_X_DM_DAILY_LIMIT = 3
    settings.MKTX_REPLY_RESERVE = 0
    batch = batch_of(fans)
    batch.prepare()
    # then three are stored and the last two are refused with the cap, nothing stored for them
    refusals = [dm.refusal for dm in batch.dms]
    assert refusals[:3] == [None, None, None]
    assert all(isinstance(r, RateLimited) and r.details["reason"] == "daily_quota" for r in refusals[3:])
    for dm in batch.dms[:3]:
        batch.send(dm)
    batch.record()
    assert Message.objects.filter(origin="campaign", status="sent").count() == 3
    assert len(sent_at_x(sandbox, shop)) == 3


def test_xs_echo_before_the_record_counts_the_dm_once(sandbox, shop, fans):
    contacts_before, _ = counted(fans[:1])
    batch = batch_of(fans[:1])
    batch.prepare()
    dm = batch.dms[0]
    batch.send(dm)
    assert dm.message is not None and dm.sent_at is not None
    # when X's echo of the DM arrives before the batch records it
    echo = dm_record(
        account=shop["account"],
        x_event_id=dm.dm_event_id,
        sender_id=shop["id"],
        recipient_id=fans[0].contact.twitter_user_id,
        text=dm.content,
        sent_at=dm.sent_at,
        profiles={},
    )
    batch.record()
    # then it is one message, sent, counted once on the contact
    assert echo is None or echo.message.pk == dm.message.pk
    assert list(Message.objects.filter(origin__in=["campaign", "x_app"]).values_list("status", flat=True)) == ["sent"]
    assert counted(fans[:1])[0] == contacts_before + 1
    assert quota_state(shop["account"].pk).used == 1


def test_a_key_already_used_answers_its_message_and_is_not_sent_again(sandbox, shop, fans):
    first = batch_of(fans[:2], key="same")
    first.prepare()
    for dm in first.dms:
        first.send(dm)
    first.record()
    # when the same keys come in a second batch
    again = batch_of(fans[:2], key="same")
    again.prepare()
    # then each answers its earlier message, and nothing goes to X twice
    assert all(dm.earlier and not dm.sendable for dm in again.dms)
    assert [getattr(dm.message, "pk", None) for dm in again.dms] == [getattr(dm.message, "pk", 0) for dm in first.dms]
    again.record()
    assert len(sent_at_x(sandbox, shop)) == 2
    assert Message.objects.filter(origin="campaign").count() == 2


def test_a_send_that_began_without_an_answer_stays_pending_for_x_to_tell(sandbox, shop, fans, monkeypatch):
    batch = batch_of(fans[:2])
    batch.prepare()
    batch.send(batch.dms[0])
    batch.dms[1].attempted = True  # the call began; the worker stopped before X answered
    batch.record()
    statuses = dict(Message.objects.filter(origin="campaign").values_list("content", "status"))
    assert statuses == {"Sale for fan 0": "sent", "Sale for fan 1": "pending"}
    assert quota_state(shop["account"].pk).used == 2


def test_an_account_whose_tokens_cannot_be_read_has_all_its_dms_refused_and_is_put_in_error(sandbox, shop, fans):
    Account.objects.filter(pk=shop["account"].pk).update(oauth_token_encrypted="not a token")
    account = Account.objects.get(pk=shop["account"].pk)
    for conversation in fans:
        conversation.account = account
    batch = batch_of(fans)
    batch.prepare()
    assert all(isinstance(dm.refusal, SendSkipped) and dm.refusal.reason == "account_inactive" for dm in batch.dms)
    assert Message.objects.filter(origin="campaign").count() == 0
    assert Account.objects.get(pk=account.pk).status == "error"
    assert sent_at_x(sandbox, shop) == []
