"""Shared set-up of the campaign tests: a shop connected through the sandbox, customers made by the real inbound
path, and a way to run the sender with the clock moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.lanes import sender_step
from contacts.models import Contact
from contacts.services.contacts import XProfile, contact_tags_add
from contacts.services.inbound import dm_record
from mktx.accounts.models import Account


class FreshTokenClient(APIClient):
    """An API client that signs each request with a token minted then: tests that move the clock by days keep a
    valid token."""

    def __init__(self, user: Any) -> None:
        super().__init__()
        self.user = user

    def request(self, **kwargs: Any) -> Any:
        from tests.factories import access_token

        self.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(self.user))
        return super().request(**kwargs)


# the moment the `clock` fixture (tests/conftest.py) starts at: a monday; 16:00 in Ho Chi Minh City (UTC+7, no DST)
CLOCK_START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)

_event_ids = iter(range(910_000_000_000_000_000, 920_000_000_000_000_000))


def connect(api: Any, sandbox: Any, username: str = "goodgo_shop") -> dict[str, Any]:
    from mktx.accounts.services import webhook_url

    if not any(w["url"] == webhook_url() for w in sandbox.server.sandbox.list_webhooks()["data"]):
        sandbox.register_webhook(webhook_url())  # as if X had checked it (no server answers CRC in these tests)
    user = sandbox.user(username)
    response = api.post(
        "/api/v1/mkt-x/accounts", {k: user[k] for k in ("oauthToken", "oauthTokenSecret")}, format="json"
    )
    assert response.status_code == 200, response.json()
    return {**user, "account": Account.objects.get(pk=response.json()["data"]["id"])}


def customer(sandbox: Any, shop: dict[str, Any], username: str, *tags: str, **attributes: Any) -> dict[str, Any]:
    """An X user who DMed the shop: contact and conversation made by the inbound path."""
    user = sandbox.user(username, username.replace("_", " ").title())
    message = dm_record(
        account=shop["account"],
        x_event_id=str(next(_event_ids)),
        sender_id=user["id"],
        recipient_id=shop["id"],
        text="Hello shop",
        sent_at=timezone.now() - timedelta(days=4),  # outside the reply window of anything sent in the test
        profiles={user["id"]: XProfile(id=user["id"], username=username, name=user["name"])},
    )
    assert message is not None
    contact = Contact.objects.get(pk=message.conversation.contact_id)
    if tags:
        contact_tags_add(contact=contact, tags=list(tags))
    if attributes:
        Contact.objects.filter(pk=contact.pk).update(attributes=attributes)
    return {**user, "contact": Contact.objects.get(pk=contact.pk)}


def drain(traveller: Any, *, limit: int = 200, until: datetime | None = None) -> int:
    """Run the sender, moving the clock to each next slot, until nothing waits (or `until`). Answers the steps."""
    for step in range(limit):
        wake = sender_step()
        if wake is None:
            return step + 1
        if until is not None and wake > until:
            traveller.move_to(until)
            sender_step()
            return step + 1
        now = timezone.now()
        if wake > now:
            traveller.move_to(wake + timedelta(milliseconds=5))
    raise AssertionError("the sender did not finish")
