"""The pure parser, on a fixture of every event kind of x-platform-notes.md."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webhooks_app.events import (
    DirectMessageEvent,
    FollowEvent,
    ReadReceiptEvent,
    RevokeEvent,
    TypingEvent,
    UnknownEvent,
)
from webhooks_app.parser import PayloadError, parse_event, split_payload

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x_events.json").read_text())


def one(name: str):
    (raw,) = split_payload(copy.deepcopy(FIXTURES[name]))
    return raw, parse_event(raw.kind, raw.payload)


def test_a_direct_message_keeps_text_sender_attachment_quick_reply_and_users():
    raw, event = one("direct_message")
    assert raw.kind == "direct_message"
    assert raw.dedup_key == "dm:954491830116155396:4337869213"
    assert isinstance(event, DirectMessageEvent)
    assert (event.sender_id, event.recipient_id, event.for_user_id) == ("3001969357", "4337869213", "4337869213")
    assert event.text == "Hello, I have a question about my order"
    assert event.created_at == datetime(2018, 1, 19, 23, 12, 40, 557000, tzinfo=UTC)
    assert event.attachment is not None and event.attachment["media"]["id_str"] == "951"
    assert event.quick_reply_response == {"type": "options", "metadata": "order_help"}
    assert event.users["3001969357"].screen_name == "customer_john"
    assert event.users["3001969357"].profile_image_url.endswith("john_normal.jpg")
    assert not event.is_echo
    assert event.other_party_id == "3001969357"


def test_an_echo_of_the_accounts_own_dm_is_recognised():
    _, event = one("echo")
    assert isinstance(event, DirectMessageEvent)
    assert event.is_echo
    assert event.other_party_id == "3001969357"
    assert event.source_app_id == "268278"


def test_follow_and_unfollow():
    raw, event = one("follow")
    assert raw.kind == "follow"
    assert isinstance(event, FollowEvent) and event.type == "follow"
    assert (event.source.id, event.target.id) == ("3001969357", "4337869213")
    raw, event = one("unfollow")
    assert raw.kind == "unfollow"
    assert isinstance(event, FollowEvent) and event.type == "unfollow"
    assert raw.dedup_key == "follow:unfollow:3001969357:4337869213:1517588759178:4337869213"


def test_a_read_receipt_is_keyed_on_its_triple():
    raw, event = one("read")
    assert raw.dedup_key == "read:3001969357:4337869213:954491830116155397:4337869213"
    assert isinstance(event, ReadReceiptEvent)
    assert (event.reader_id, event.recipient_id, event.last_read_event_id) == (
        "3001969357",
        "4337869213",
        "954491830116155397",
    )


def test_typing_has_no_id_and_is_keyed_on_its_content():
    raw, event = one("typing")
    assert raw.kind == "typing" and raw.dedup_key.startswith("typing:")
    assert isinstance(event, TypingEvent)
    assert split_payload(copy.deepcopy(FIXTURES["typing"]))[0].dedup_key == raw.dedup_key


def test_revoke_has_no_for_user_id():
    raw, event = one("revoke")
    assert raw.kind == "revoke"
    assert raw.for_user_id == "4337869213"
    assert isinstance(event, RevokeEvent)
    assert (event.user_id, event.app_id) == ("4337869213", "13090192")


def test_an_unknown_kind_is_kept_as_unknown():
    raw, event = one("tweet_create")
    assert raw.kind == "unknown"
    assert isinstance(event, UnknownEvent)
    assert "tweet_create_events" in event.keys


def test_a_delivery_with_several_events_is_split_one_row_each():
    body = copy.deepcopy(FIXTURES["direct_message"])
    second = copy.deepcopy(body["direct_message_events"][0])
    second["id"] = "954491830116155999"
    body["direct_message_events"].append(second)
    rows = split_payload(body)
    assert [r.dedup_key for r in rows] == ["dm:954491830116155396:4337869213", "dm:954491830116155999:4337869213"]
    assert all(len(r.payload["direct_message_events"]) == 1 and "users" in r.payload for r in rows)


def test_the_same_dm_for_two_subscribed_accounts_is_two_rows():
    mine = split_payload(copy.deepcopy(FIXTURES["direct_message"]))[0]
    theirs_body = copy.deepcopy(FIXTURES["direct_message"])
    theirs_body["for_user_id"] = "3001969357"
    theirs = split_payload(theirs_body)[0]
    assert mine.dedup_key != theirs.dedup_key


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("direct_message", lambda b: b["direct_message_events"][0].pop("message_create")),
        ("direct_message", lambda b: b["direct_message_events"][0]["message_create"].pop("sender_id")),
        ("direct_message", lambda b: b["direct_message_events"][0].update(created_timestamp="yesterday")),
        ("follow", lambda b: b["follow_events"][0].pop("source")),
        ("read", lambda b: b["direct_message_mark_read_events"][0].pop("last_read_event_id")),
        ("revoke", lambda b: b["user_event"]["revoke"].pop("source")),
    ],
)
def test_malformed_events_raise_payload_error(name, mutate):
    body = copy.deepcopy(FIXTURES[name])
    mutate(body)
    with pytest.raises(PayloadError):
        for raw in split_payload(body):
            parse_event(raw.kind, raw.payload)


@pytest.mark.parametrize("body", [[], "text", 3, None, {"direct_message_events": ["not an object"]}])
def test_a_body_that_is_not_a_payload_is_refused(body):
    with pytest.raises(PayloadError):
        split_payload(body)


@pytest.mark.parametrize("name", ["direct_message", "follow", "read", "typing", "revoke"])
@pytest.mark.parametrize("junk", [True, 3, "x", ["a"]])
def test_an_object_field_that_holds_something_else_never_raises_anything_but_payload_error(name, junk):
    """Found by the schema fuzzer: `"target": true` in a read event was an AttributeError (a 500)."""
    body = copy.deepcopy(FIXTURES[name])
    event = next(value[0] for value in body.values() if isinstance(value, list)) if name != "revoke" else None
    for holder in [event, body.get("user_event"), (body.get("user_event") or {}).get("revoke")]:
        if isinstance(holder, dict):
            for key in ("target", "source", "message_create", "revoke"):
                if key in holder:
                    holder[key] = junk
    try:
        for raw in split_payload(body):
            parse_event(raw.kind, raw.payload)
    except PayloadError:
        pass
