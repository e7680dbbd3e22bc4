"""Where flows start: the inbound handler table (webhooks_app/handlers.py) and the contacts hooks
(contacts/hooks.py: a contact created, tags added, a campaign reply attributed) call these; never a signal.

STUB: signatures are final; the bodies are being written (automation engine)."""

from __future__ import annotations

from typing import Any

from contacts.models import Contact, Message


def reply_take(*, message: Message) -> bool:
    """An inbound customer DM (not a consent word): an execution of this contact waiting in a `wait_for_reply`
    takes it. True when one did (the DM then triggers no `message_received` flow and gets no other answer)."""
    return False


def message_received(*, message: Message) -> bool:
    """An inbound customer DM no waiting execution took: the matching `message_received` flows start. True when
    at least one started (the DM is answered by a flow)."""
    return False


def follower_added(*, contact: Contact) -> None:
    """The contact started following its account: `new_follower` flows start."""


def contact_created(*, contact: Contact) -> None:
    """A new contact, from any source: `contact_created` flows start."""


def tags_added(*, contact: Contact, tags: list[str]) -> None:
    """Tags newly added to a contact (not those it already had), by anyone: `tag_added` flows start."""


def campaign_replied(*, contact: Contact, campaign_id: Any) -> None:
    """A campaign recipient replied within the attribution window: `campaign_replied` flows start."""


def contacts_enroll(*, flow: Any, contacts: list[Contact]) -> list[tuple[Contact, Any]]:
    """`POST /automation/flows/{id}/enroll`: start `flow` (active, trigger `manual`) for each contact. Answers
    (contact, Execution) for each started one and (contact, reason: str) for each not started (`already_enrolled`
    under reentry never, `running`, `opted_out`? no: opted-out contacts are enrolled, their sends skipped)."""
    return []
