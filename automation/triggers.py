"""Where flows start: the inbound handler table (webhooks_app/handlers.py) and the contacts hooks
(contacts/hooks.py: a contact created, tags added, a campaign reply attributed) call these; never a signal.

Each runs in its caller's transaction: the executions it starts are stored with the event, and advanced after the
commit. A flow starts for a contact only when it is active, of the contact's merchant, scoped to the contact's
account (`accountIds`), and its trigger's config accepts the event; always on its latest version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import F

from automation.engine import execution_reply, execution_start, graph_of
from automation.keywords import keyword_match
from automation.models import Execution, ExecutionStatus, Flow, FlowStatus, FlowVersion, WaitKind
from contacts.models import Contact, Message
from mktx.api.errors import InvalidInput
from mktx.memo import memo_seed, memoized

Accepts = Callable[[dict[str, Any]], bool]


def _versions(merchant_id: Any, trigger_type: str) -> list[FlowVersion]:
    """The latest versions of the merchant's active flows with this trigger (once per batch, see mktx/memo.py)."""
    return memoized(("flow_versions", merchant_id, trigger_type), lambda: _versions_read(merchant_id, trigger_type))


def _versions_read(merchant_id: Any, trigger_type: str) -> list[FlowVersion]:
    return list(
        FlowVersion.objects.filter(
            flow__merchant_id=merchant_id,
            flow__status=FlowStatus.ACTIVE,
            flow__deleted_at__isnull=True,
            flow__trigger_type=trigger_type,
            number=F("flow__version"),
        ).select_related("flow")
    )


def _in_scope(version: FlowVersion, contact: Contact) -> bool:
    return version.account_ids is None or str(contact.account_id) in {str(a) for a in version.account_ids}


SENDING_NODES = frozenset({"send_message", "ai_reply"})


def _start(contact: Contact, trigger_type: str, accepts: Accepts | None = None, *, answering: bool = False) -> int:
    """Start every flow of `trigger_type` that accepts the event for `contact`; how many started (with `answering`:
    how many of them send something, and so answer the DM that started them)."""
    started = 0
    for version in _versions(contact.merchant_id, trigger_type):
        config = version.trigger_config or {}
        if not _in_scope(version, contact) or (accepts is not None and not accepts(config)):
            continue
        if isinstance(execution_start(version=version, contact=contact), Execution):
            sends = any(node.get("type") in SENDING_NODES for node in version.nodes or [])
            started += 1 if sends or not answering else 0
    return started


def _keywords_accept(text: str) -> Accepts:
    def accepts(config: dict[str, Any]) -> bool:
        keywords = config.get("keywords") or []
        return not keywords or keyword_match(text, keywords, config.get("match") or "contains")

    return accepts


def reply_take(*, message: Message) -> bool:
    """An inbound customer DM (not a consent word): an execution of this contact waiting in a `wait_for_reply`
    takes it. True when one took it or still waits for it (a reply that misses the node's keywords leaves it
    waiting): the DM then triggers no `message_received` flow and gets no other answer."""
    contact_id = message.conversation.contact_id
    if not memoized(("reply waits", contact_id), lambda: True):  # known to have none (reply_waits_prefetch)
        return False
    waiting = list(
        Execution.objects.filter(contact_id=contact_id, status=ExecutionStatus.RUNNING, waiting_for=WaitKind.REPLY)
        .select_related("version")
        .order_by("pk")  # taken (and so locked) in key order, as the resumer's claims and cancels lock
    )
    kept = False
    for execution in waiting:
        node = graph_of(execution.version).nodes.get(execution.current_node_id) or {}
        config = node.get("config") or {}
        if not _keywords_accept(message.content)(config):
            kept = True  # still waiting for the right words: the DM is its, nobody else answers it
        elif execution_reply(execution=execution, message=message):
            kept = True
    return kept  # False also when each waiting one timed out first: the DM goes on to the flows and the rest


def reply_waits_prefetch(*, contact_ids: list[Any]) -> None:
    """In a batch (mktx/memo.py): which of these contacts have an execution waiting for their reply, read once, so
    that `reply_take` looks no further for the others. A wait that begins during the batch is seen from the next."""
    waiting = set(
        Execution.objects.filter(
            contact_id__in=set(contact_ids), status=ExecutionStatus.RUNNING, waiting_for=WaitKind.REPLY
        ).values_list("contact_id", flat=True)
    )
    memo_seed({("reply waits", pk): pk in waiting for pk in contact_ids})


def message_received(*, message: Message) -> bool:
    """An inbound customer DM no waiting execution took: the matching `message_received` flows start. True when
    one that sends something started (the DM is answered by a flow; one that only tags leaves it to the bot)."""
    contact = message.conversation.contact
    return _start(contact, "message_received", _keywords_accept(message.content), answering=True) > 0


def follower_added(*, contact: Contact) -> None:
    """The contact started following its account: `new_follower` flows start."""
    _start(contact, "new_follower")


def contact_created(*, contact: Contact) -> None:
    """A new contact, from any source: `contact_created` flows start."""
    _start(contact, "contact_created")


def tags_added(*, contact: Contact, tags: list[str]) -> None:
    """Tags newly added to a contact (not those it already had), by anyone: `tag_added` flows start."""
    names = {str(tag).casefold() for tag in tags}
    _start(contact, "tag_added", lambda config: str(config.get("tag", "")).casefold() in names)


def campaign_replied(*, contact: Contact, campaign_id: Any) -> None:
    """A campaign recipient replied within the attribution window: `campaign_replied` flows start."""
    _start(
        contact,
        "campaign_replied",
        lambda config: not config.get("campaignId") or str(config["campaignId"]) == str(campaign_id),
    )


def contacts_enroll(*, flow: Flow, contacts: list[Contact]) -> list[tuple[Contact, Execution | str]]:
    """`POST /automation/flows/{id}/enroll`: start `flow` (active, trigger `manual`) for each contact. Answers
    (contact, Execution) for each started one and (contact, reason) for the others: `already_enrolled` (re-entry
    `never`), `running`, `out_of_scope` (an account the flow is not for). Opted-out contacts are enrolled: their
    sends are skipped."""
    if flow.status != FlowStatus.ACTIVE:
        raise InvalidInput("status", "only an active flow enrols contacts: activate it first")
    if flow.trigger_type != "manual":
        raise InvalidInput("trigger.type", "only a flow with the manual trigger enrols contacts")
    version = FlowVersion.objects.get(flow=flow, number=flow.version)
    version.flow = flow
    answers: list[tuple[Contact, Execution | str]] = []
    for contact in contacts:
        answers.append(
            (
                contact,
                execution_start(version=version, contact=contact) if _in_scope(version, contact) else "out_of_scope",
            )
        )
    return answers
