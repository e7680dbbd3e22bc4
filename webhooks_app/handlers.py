"""The explicit table from typed inbound events to the apps' services. A reader follows the calls from here.

Each handler gets the event and the connected account it is for, runs in one transaction, and must be idempotent:
replays and X's duplicate deliveries call it again for the same event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mktx.accounts.models import Account
from mktx.accounts.services import account_revoked
from webhooks_app.events import RevokeEvent


def _revoke(event: RevokeEvent, account: Account) -> None:
    account_revoked(twitter_user_id=event.user_id)


Handler = Callable[[Any, Account], None]

HANDLERS: dict[type, Handler] = {
    RevokeEvent: _revoke,
}
