"""The recorded-payload corpus (issue 16): `tests/fixtures/x_payloads/` holds webhook payloads in X's documented
Account Activity shapes (DMs with links, media and quick-reply responses, an echo of a DM written in X's app,
follows, unfollows, read receipts, typing, a DM between two subscribed accounts delivered to each, a revoke). The
parser reads every one into its typed events, and the handlers, fed the whole corpus in order through the signed
webhook, do what each says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contacts.models import Contact, Message
from tests.factories import AccountFactory
from tests.test_webhooks import deliver
from webhooks_app.events import DirectMessageEvent, FollowEvent, ReadReceiptEvent, RevokeEvent, TypingEvent
from webhooks_app.models import InboundEvent
from webhooks_app.parser import parse_event, split_payload

pytestmark = pytest.mark.django_db
CORPUS = Path(__file__).parent / "fixtures" / "x_payloads"
FILES = sorted(CORPUS.glob("*.json"))
SHOP, SHOP_B, JOHN = "4337869213", "5550000001", "3001969357"
KINDS = {
    "01_dm_with_links": DirectMessageEvent,
    "02_dm_with_media": DirectMessageEvent,
    "03_dm_quick_reply_response": DirectMessageEvent,
    "04_echo_x_app": DirectMessageEvent,
    "05_follow": FollowEvent,
    "06_unfollow": FollowEvent,
    "07_read_receipt": ReadReceiptEvent,
    "08_typing": TypingEvent,
    "09_several_users_for_a": DirectMessageEvent,
    "10_several_users_for_b": DirectMessageEvent,
    "11_revoke": RevokeEvent,
}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((CORPUS / f"{name}.json").read_text()))


def test_the_corpus_holds_every_kind_the_issue_names():
    assert [path.stem for path in FILES] == list(KINDS)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_the_parser_reads_each_payload_into_its_event(path):
    body = json.loads(path.read_text())
    (raw,) = split_payload(body)
    event = parse_event(raw.kind, raw.payload)
    assert isinstance(event, KINDS[path.stem])
    if isinstance(event, DirectMessageEvent):
        urls = body["direct_message_events"][0]["message_create"]["message_data"]["entities"]["urls"]
        assert [u["url"] for u in event.entities.get("urls", [])] == [u["url"] for u in urls]


def test_the_handlers_do_what_each_payload_says(merchant, django_capture_on_commit_callbacks):
    shop = AccountFactory.create(merchant=merchant, twitter_user_id=SHOP, username="goodgo_shop")
    outlet = AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_B, username="goodgo_outlet")

    def play(name: str) -> InboundEvent:
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(load(name)).status_code == 200
        event = InboundEvent.objects.latest("id")
        assert event.status in ("processed", "ignored"), (name, event.status, event.status_reason)
        return event

    play("01_dm_with_links")
    john = Contact.objects.get(account=shop, twitter_user_id=JOHN)
    first = Message.objects.get(twitter_message_id="1800000000000000001")
    assert first.content == "Is this still in stock? https://goodgo.example/p/red-shoes?size=42"
    assert first.metadata["xText"] == "Is this still in stock? https://t.co/Xy12ab34Cd"

    play("02_dm_with_media")
    photo = Message.objects.get(twitter_message_id="1800000000000000002")
    assert photo.type == "image" and photo.attachments[0]["url"].endswith("/box.jpg")
    assert photo.content == "Here is the damaged box"  # the t.co link X appends for the media is not the text

    play("03_dm_quick_reply_response")
    choice = Message.objects.get(twitter_message_id="1800000000000000003")
    assert choice.type == "quick_reply" and choice.metadata["quickReplyResponse"]["metadata"] == "track_order"

    play("04_echo_x_app")
    answer = Message.objects.get(twitter_message_id="1800000000000000004")
    assert (answer.direction, answer.origin, answer.status) == ("outbound", "x_app", "sent")
    assert answer.content == "Yes! Size 42 is here: https://goodgo.example/p/red-shoes"

    play("05_follow")
    assert Contact.objects.get(pk=john.pk).following is True
    play("06_unfollow")
    assert Contact.objects.get(pk=john.pk).following is False

    play("07_read_receipt")
    assert Message.objects.get(pk=answer.pk).read_at is not None
    assert Message.objects.get(pk=first.pk).read_at is None  # inbound DMs are not the account's to be read

    typing = play("08_typing")
    assert typing.status in ("processed", "ignored")
    assert Message.objects.count() == 4

    play("09_several_users_for_a")
    play("10_several_users_for_b")
    sent = Message.objects.get(account=shop, twitter_message_id="1800000000000000010")
    received = Message.objects.get(account=outlet, twitter_message_id="1800000000000000010")
    assert (sent.direction, sent.origin) == ("outbound", "x_app")
    assert (received.direction, received.content) == ("inbound", "Hello from the main shop")
    assert Contact.objects.get(account=outlet, twitter_user_id=SHOP).username == "goodgo_shop"

    play("11_revoke")
    outlet.refresh_from_db()
    shop.refresh_from_db()
    assert outlet.status == "error" and shop.status == "active"

    for name in KINDS:  # X delivers again: nothing changes
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(load(name)).status_code == 200
    assert Message.objects.count() == 6
