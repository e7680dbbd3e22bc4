"""Contact hooks: what `contacts` and `campaigns` tell the apps above them happened to a contact.

Flows start on events that happen down here: a contact created (by an inbound DM, a follow, an echo), tags added to
a contact (by the API, the admin, a flow), a campaign reply attributed. `automation` imports `contacts` and
`campaigns`, never the other way round (dependencies point one way, ARCHITECTURE.md), and Django signals are out
(a reader follows the calls). So the table is explicit and short: one listener per event, registered from
`AutomationConfig.ready()`; the service where the event happens calls the event's `*_fire` function inside its
transaction, so what the listener does commits or rolls back with the event, and a failing listener undoes it.
`contacts` knows only these signatures, never what a listener does.

Bulk writes that are not events (seed_demo's demo data, the benchmarks' fixtures) insert rows directly and fire
nothing. A tag the contact already had, a contact updated rather than created, a reply outside the attribution
window: no event, no call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from contacts.models import Contact


class ContactCreated(Protocol):
    def __call__(self, *, contact: Contact) -> None: ...


class TagsAdded(Protocol):
    def __call__(self, *, contact: Contact, tags: list[str]) -> None: ...


class CampaignReplied(Protocol):
    def __call__(self, *, contact: Contact, campaign_id: Any) -> None: ...


@dataclass(frozen=True)
class ContactHooks:
    """The listeners, one per event (None: nobody listens)."""

    contact_created: ContactCreated | None = None
    tags_added: TagsAdded | None = None
    campaign_replied: CampaignReplied | None = None


_hooks = ContactHooks()


def hooks_register(
    *,
    contact_created: ContactCreated | None = None,
    tags_added: TagsAdded | None = None,
    campaign_replied: CampaignReplied | None = None,
) -> ContactHooks:
    """Set the listeners given (one given again is replaced: ready() may run more than once); those not given stay.
    Answers the table as it was before, for a caller that puts it back (`hooks_set`)."""
    global _hooks
    before = _hooks
    _hooks = ContactHooks(
        contact_created=contact_created or before.contact_created,
        tags_added=tags_added or before.tags_added,
        campaign_replied=campaign_replied or before.campaign_replied,
    )
    return before


def hooks_set(hooks: ContactHooks) -> None:
    """Put back a whole table (what `hooks_register` answered)."""
    global _hooks
    _hooks = hooks


def hooks_registered() -> ContactHooks:
    return _hooks


def contact_created_fire(*, contact: Contact) -> None:
    """A contact was just created, from any source."""
    if _hooks.contact_created is not None:
        _hooks.contact_created(contact=contact)


def tags_added_fire(*, contact: Contact, tags: list[str]) -> None:
    """`tags` were newly added to the contact (not those it already had)."""
    if tags and _hooks.tags_added is not None:
        _hooks.tags_added(contact=contact, tags=tags)


def campaign_replied_fire(*, contact: Contact, campaign_id: Any) -> None:
    """The contact's DM was attributed as a reply to campaign `campaign_id`."""
    if _hooks.campaign_replied is not None:
        _hooks.campaign_replied(contact=contact, campaign_id=campaign_id)
