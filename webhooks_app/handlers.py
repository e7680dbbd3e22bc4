"""The explicit table from typed inbound events to the apps' services. A reader follows the calls from here.

Each handler gets the event and the connected account it is for, runs in one transaction, and must be idempotent:
replays and X's duplicate deliveries call it again for the same event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automation import triggers
from automation.engine import executions_cancel
from campaigns.attribution import deliveries_opened, deliveries_replied, deliveries_replied_prefetch
from chatbot.autoreply import bot_takes
from contacts.models import ConsentAction
from contacts.services.consent import consent_confirm_later, consent_keyword, contact_consent_set
from contacts.services.contacts import XProfile
from contacts.services.inbound import (
    InboundDM,
    RecordedDM,
    away_message_if_closed,
    dm_record,
    follow_record,
    read_receipt_record,
)
from contacts.services.inbound_batch import dms_record
from mktx.accounts.models import Account
from mktx.accounts.services import account_revoked
from webhooks_app.events import DirectMessageEvent, FollowEvent, ReadReceiptEvent, RevokeEvent, XUserInfo


def _profile(user: XUserInfo) -> XProfile:
    return XProfile(id=user.id, username=user.screen_name, name=user.name, profile_image_url=user.profile_image_url)


def _direct_message(event: DirectMessageEvent, account: Account) -> None:
    """Record the DM, attribute it to the campaigns it replies to, then decide who answers it: the one place
    that does. Echoes of the account's own DMs are recorded only."""
    recorded = dm_record(
        account=account,
        x_event_id=event.event_id,
        sender_id=event.sender_id,
        recipient_id=event.recipient_id,
        text=event.text,
        sent_at=event.created_at,
        profiles={uid: _profile(user) for uid, user in event.users.items()},
        attachment=event.attachment,
        quick_reply_response=event.quick_reply_response,
        entities=event.entities,
    )
    if recorded is not None:  # else stored already: a replay, or X's duplicate delivery
        _answer_recorded(recorded, account)


def direct_messages(dms: list[tuple[DirectMessageEvent, Account]]) -> None:
    """`_direct_message` for many customers' DMs (none an echo of an account's own), in the caller's transaction and
    their order: recorded in one statement per step (contacts/services/inbound_batch.py), with what the deciders
    look for (waiting executions, deliveries to attribute) read once for all, then each answered as one is."""
    recorded = dms_record(
        [
            InboundDM(
                account=account,
                x_event_id=event.event_id,
                profile=_profile(event.users[event.sender_id])
                if event.sender_id in event.users
                else XProfile(id=event.sender_id),
                text=event.text,
                sent_at=event.created_at,
                attachment=event.attachment,
                quick_reply_response=event.quick_reply_response,
                entities=event.entities,
            )
            for event, account in dms
        ]
    )
    stored = [r for r in recorded if r is not None]
    if not stored:
        return
    contact_ids = [r.contact.pk for r in stored]
    triggers.reply_waits_prefetch(contact_ids=contact_ids)
    deliveries_replied_prefetch(contact_ids=contact_ids, at=[r.message.sent_at for r in stored])  # type: ignore[misc]
    for r, (_, account) in zip(recorded, dms, strict=True):
        if r is not None:
            _answer_recorded(r, account)


def _answer_recorded(recorded: RecordedDM, account: Account) -> None:
    keyword = consent_keyword(recorded.message.content, account) if recorded.inbound else None
    deliveries_replied(message=recorded.message, hooks=keyword is None)  # a consent word triggers no flow
    if not recorded.inbound:
        return
    if keyword is not None:
        _consent_answer(recorded, action=keyword[0], keyword=keyword[1])
        return
    _answer(recorded, account)


def _consent_answer(recorded: RecordedDM, *, action: str, keyword: str) -> None:
    """A consent keyword: the change recorded and confirmed once; a STOP also ends the contact's running flows."""
    change = contact_consent_set(contact=recorded.contact, action=action, keyword=keyword, message=recorded.message)
    if change is not None:
        consent_confirm_later(event=change, conversation=recorded.conversation)
    if action == ConsentAction.OPT_OUT:
        executions_cancel(contact_id=recorded.contact.pk, reason="opted_out")


def _answer(recorded: RecordedDM, account: Account) -> None:
    """Who answers a customer's DM (not a consent word), the first that takes it: (b) an execution waiting for
    this contact's reply, (c) the `message_received` flows, (d) the chatbot, (e) the away message."""
    if triggers.reply_take(message=recorded.message):
        return
    if triggers.message_received(message=recorded.message):
        return
    if bot_takes(message=recorded.message, conversation=recorded.conversation):
        return  # the bot answers (after the commit): it replaces the away message
    away_message_if_closed(account=account, conversation=recorded.conversation)


def _follow(event: FollowEvent, account: Account) -> None:
    follower = follow_record(
        account=account,
        follower=_profile(event.source),
        followed_id=event.target.id,
        following=event.type == "follow",
        at=event.created_at,
    )
    if follower is not None:  # a new follower (not an unfollow, nor a follow X told again)
        triggers.follower_added(contact=follower)


def _read_receipt(event: ReadReceiptEvent, account: Account) -> None:
    read_receipt_record(
        account=account, reader_id=event.reader_id, last_read_event_id=event.last_read_event_id, at=event.created_at
    )
    deliveries_opened(account=account, reader_id=event.reader_id, at=event.created_at)


def _revoke(event: RevokeEvent, account: Account) -> None:
    account_revoked(twitter_user_id=event.user_id)


Handler = Callable[[Any, Account], None]
RunHandler = Callable[[list[tuple[Any, Account]]], None]

HANDLERS: dict[type, Handler] = {
    DirectMessageEvent: _direct_message,
    FollowEvent: _follow,
    ReadReceiptEvent: _read_receipt,
    RevokeEvent: _revoke,
}

# the same for a run of events recorded together (a drain's batch): customers' DMs, none an echo
RUN_HANDLERS: dict[type, RunHandler] = {DirectMessageEvent: direct_messages}
