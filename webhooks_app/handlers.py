"""The explicit table from typed inbound events to the apps' services. A reader follows the calls from here.

Each handler gets the event and the connected account it is for, runs in one transaction, and must be idempotent:
replays and X's duplicate deliveries call it again for the same event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from campaigns.attribution import deliveries_opened, deliveries_replied
from contacts.services.contacts import XProfile
from contacts.services.inbound import dm_record, follow_record, read_receipt_record
from mktx.accounts.models import Account
from mktx.accounts.services import account_revoked
from webhooks_app.events import DirectMessageEvent, FollowEvent, ReadReceiptEvent, RevokeEvent, XUserInfo


def _profile(user: XUserInfo) -> XProfile:
    return XProfile(id=user.id, username=user.screen_name, name=user.name, profile_image_url=user.profile_image_url)


def _direct_message(event: DirectMessageEvent, account: Account) -> None:
    message = dm_record(
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
    deliveries_replied(message=message)


def _follow(event: FollowEvent, account: Account) -> None:
    follow_record(
        account=account,
        follower=_profile(event.source),
        followed_id=event.target.id,
        following=event.type == "follow",
        at=event.created_at,
    )


def _read_receipt(event: ReadReceiptEvent, account: Account) -> None:
    read_receipt_record(
        account=account, reader_id=event.reader_id, last_read_event_id=event.last_read_event_id, at=event.created_at
    )
    deliveries_opened(account=account, reader_id=event.reader_id, at=event.created_at)


def _revoke(event: RevokeEvent, account: Account) -> None:
    account_revoked(twitter_user_id=event.user_id)


Handler = Callable[[Any, Account], None]

HANDLERS: dict[type, Handler] = {
    DirectMessageEvent: _direct_message,
    FollowEvent: _follow,
    ReadReceiptEvent: _read_receipt,
    RevokeEvent: _revoke,
}
