"""A known history for the analytics tests, written row by row at chosen times (UTC), for one merchant with two
accounts and, beside it, another merchant whose rows must never be counted. The range the tests read is January
2026; some rows fall just outside it, or on the other side of a day, week or month in Asia/Ho_Chi_Minh (UTC+7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from automation.models import Execution, Flow, FlowVersion, Step
from campaigns.models import Campaign, CampaignRun, Delivery
from chatbot.models import AISettings, ChatSession, ChatTurn
from contacts.models import Contact, Conversation, ConversationEvent, ConversationResponse, Message
from tests.campaign_helpers import FreshTokenClient
from tests.factories import AccountFactory, ContactFactory, ConversationFactory, MerchantFactory, UserFactory

REPORTS = "/api/v1/mkt-x/analytics"


def report(history: History, name: str, **params: Any) -> dict[str, Any]:
    """`GET /analytics/<name>` as the history's agent: the answer's data (a 200 asserted)."""
    response = FreshTokenClient(history.agent).get(f"{REPORTS}/{name}", params)
    assert response.status_code == 200, response.content
    return dict(response.json()["data"])


def nonzero(series: list[dict[str, Any]], column: str) -> dict[str, int]:
    """A series column as {date: n} without its zeros."""
    return {row["date"]: row[column] for row in series if row[column]}


def utc(month: int, day: int, hour: int = 12, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass
class History:
    merchant: Any
    owner: Any
    agent: Any
    accounts: list[Any]
    contacts: dict[str, Contact] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    campaign: Any = None
    flow: Any = None
    stranger: Any = None


def contact(history: History, name: str, first: datetime, *, account: int = 0, **fields: Any) -> Contact:
    row = ContactFactory.create(
        merchant=history.merchant,
        account=history.accounts[account],
        username=name,
        first_interaction_at=first,
        **fields,
    )
    history.contacts[name] = row
    return row


def conversation(history: History, name: str, opened: datetime, **fields: Any) -> Conversation:
    person = history.contacts[name]
    row = ConversationFactory.create(contact=person, started_at=opened, last_message_at=opened, **fields)
    event(row, "opened", opened)
    history.conversations[name] = row
    return row


def event(row: Conversation, kind: str, at: datetime, opened_at: datetime | None = None, assignee: Any = None) -> None:
    seconds = None if opened_at is None else int((at - opened_at).total_seconds())
    ConversationEvent.objects.create(
        merchant_id=row.merchant_id,
        account_id=row.account_id,
        conversation=row,
        kind=kind,
        at=at,
        opened_at=opened_at,
        seconds=seconds,
        assignee=assignee,
    )


def dm(row: Conversation, at: datetime, *, inbound: bool = True, status: str = "") -> Message:
    message = Message.objects.create(
        account_id=row.account_id,
        conversation=row,
        direction="inbound" if inbound else "outbound",
        origin="customer" if inbound else "staff",
        content="hi",
        status=status or ("received" if inbound else "sent"),
        sent_at=at,
    )
    Message.objects.filter(pk=message.pk).update(created_at=at)  # received then
    return message


def answered(row: Conversation, waited: datetime, seconds: int, responder: str, user: Any = None) -> None:
    ConversationResponse.objects.create(
        merchant_id=row.merchant_id,
        account_id=row.account_id,
        conversation=row,
        waited_since=waited,
        answered_at=waited,
        seconds=seconds,
        responder=responder,
        user=user,
    )


def delivery(campaign: Campaign, person: Contact, status: str, at: datetime, **times: datetime) -> None:
    run = CampaignRun.objects.get_or_create(campaign=campaign, number=1, defaults={"started_at": at})[0]
    Delivery.objects.create(
        run=run, campaign=campaign, contact=person, account=person.account, status=status, created_at=at, **times
    )


def execution(
    flow: Flow, person: Contact, status: str, started: datetime, steps: dict[str, str], **fields: Any
) -> None:
    version = FlowVersion.objects.get_or_create(flow=flow, number=1, defaults={"trigger_type": "manual"})[0]
    row = Execution.objects.create(
        merchant=flow.merchant, flow=flow, version=version, contact=person, status=status, started_at=started, **fields
    )
    for node_id, step_status in steps.items():
        Step.objects.create(execution=row, node_id=node_id, type="add_tag", status=step_status, started_at=started)


def build_history() -> History:
    merchant = MerchantFactory.create()
    history = History(
        merchant=merchant,
        owner=UserFactory.create(merchant=merchant, role="owner"),
        agent=UserFactory.create(merchant=merchant, role="agent"),
        accounts=[AccountFactory.create(merchant=merchant), AccountFactory.create(merchant=merchant)],
    )
    # contacts: ann on Sunday Jan 4 in UTC but Monday Jan 5 in Ho Chi Minh; bob on Jan 31 in UTC, Feb 1 there
    ann = contact(history, "ann", utc(1, 4, 20))
    bob = contact(history, "bob", utc(1, 31, 18))
    cat = contact(history, "cat", utc(1, 10), account=1, source="new_follower", opted_out=True, opted_out_at=utc(1, 20))
    contact(history, "dan", utc(12, 20, year=2025))  # before the range
    contact(history, "eve", utc(2, 10))  # after it
    # conversations: ann's closed a day after it opened and reopened; cat's opened in the range; dan's since December
    ann_talk = conversation(history, "ann", utc(1, 5, 10))
    event(ann_talk, "closed", utc(1, 6, 10), opened_at=utc(1, 5, 10), assignee=history.agent)
    event(ann_talk, "reopened", utc(1, 7, 10))
    Conversation.objects.filter(pk=ann_talk.pk).update(assigned_to=history.agent, last_message_at=utc(1, 7, 10))
    cat_talk = conversation(history, "cat", utc(1, 10, 12))
    dan_talk = conversation(history, "dan", utc(12, 20, year=2025))
    for at in (utc(1, 5, 10), utc(1, 6, 10)):
        dm(ann_talk, at)
    dm(cat_talk, utc(1, 10, 12))
    dm(dan_talk, utc(12, 20, year=2025))  # outside
    dm(ann_talk, utc(1, 5, 10, 5), inbound=False)
    dm(cat_talk, utc(1, 10, 13), inbound=False)
    dm(cat_talk, utc(1, 10, 14), inbound=False, status="failed")  # not sent: not counted
    answered(ann_talk, utc(1, 5, 10), 300, "staff", history.agent)
    answered(ann_talk, utc(1, 6, 10), 900, "staff", history.agent)
    answered(cat_talk, utc(1, 10, 12), 60, "bot")
    answered(dan_talk, utc(12, 20, year=2025), 5, "staff")  # outside
    # a campaign: two sends in the range (one delivered, opened, clicked, replied; one failed), one before it
    history.campaign = Campaign.objects.create(merchant=merchant, name="January sale", status="completed")
    Campaign.objects.filter(pk=history.campaign.pk).update(finished_at=utc(1, 8))
    delivery(history.campaign, ann, "sent", utc(1, 5), attempted_at=utc(1, 5), sent_at=utc(1, 5),
             opened_at=utc(1, 6), clicked_at=utc(1, 6), replied_at=utc(2, 7))  # fmt: skip
    delivery(history.campaign, cat, "failed", utc(1, 5), attempted_at=utc(1, 5))
    delivery(history.campaign, bob, "sent", utc(12, 30, year=2025), attempted_at=utc(12, 30, year=2025),
             sent_at=utc(12, 30, year=2025), opened_at=utc(1, 2))  # fmt: skip
    # a flow: two executions started in the range, one before it (completed in it)
    history.flow = Flow.objects.create(
        merchant=merchant,
        name="Welcome",
        status="active",
        trigger_type="manual",
        nodes=[{"id": "a", "type": "add_tag"}, {"id": "b", "type": "add_tag"}, {"id": "c", "type": "end"}],
        version=1,
    )
    execution(history.flow, ann, "completed", utc(1, 5), {"a": "completed", "b": "completed"}, completed_at=utc(1, 6))
    execution(history.flow, cat, "failed", utc(1, 6), {"a": "completed", "b": "failed"})
    execution(history.flow, bob, "completed", utc(12, 31, year=2025), {"a": "completed"}, completed_at=utc(1, 2))
    # the bot: two answers (one a fallback), one conversation handed over
    AISettings.objects.create(merchant=merchant, enabled=True)
    session = ChatSession.objects.create(
        merchant=merchant, conversation=cat_talk, started_at=utc(1, 10), last_activity_at=utc(1, 10)
    )
    ChatTurn.objects.create(session=session, role="assistant", content="a", created_at=utc(1, 10))
    ChatTurn.objects.create(session=session, role="assistant", content="b", fallback_reason="openai_timeout",
                            created_at=utc(1, 11))  # fmt: skip
    ChatTurn.objects.create(session=session, role="user", content="c", created_at=utc(1, 11))
    Conversation.objects.filter(pk=cat_talk.pk).update(ai_status="escalated", ai_escalated_at=utc(1, 11))
    history.stranger = _stranger()
    return history


def _stranger() -> Any:
    """Another merchant with one of everything in the range."""
    other = MerchantFactory.create()
    account = AccountFactory.create(merchant=other)
    person = ContactFactory.create(merchant=other, account=account, first_interaction_at=utc(1, 5))
    talk = ConversationFactory.create(contact=person, started_at=utc(1, 5), last_message_at=utc(1, 5))
    event(talk, "opened", utc(1, 5))
    dm(talk, utc(1, 5))
    answered(talk, utc(1, 5), 7, "staff")
    campaign = Campaign.objects.create(merchant=other, name="Theirs", status="running")
    delivery(campaign, person, "sent", utc(1, 5), attempted_at=utc(1, 5), sent_at=utc(1, 5))
    flow = Flow.objects.create(merchant=other, name="Theirs", status="active", trigger_type="manual", version=1)
    execution(flow, person, "running", utc(1, 5), {"a": "completed"})
    AISettings.objects.create(merchant=other, enabled=True)  # and a bot that answered, fell back and handed over
    session = ChatSession.objects.create(
        merchant=other, conversation=talk, started_at=utc(1, 5), last_activity_at=utc(1, 5)
    )
    ChatTurn.objects.create(session=session, role="assistant", content="x", created_at=utc(1, 5))
    ChatTurn.objects.create(
        session=session, role="assistant", content="y", fallback_reason="openai_timeout", created_at=utc(1, 5)
    )
    Conversation.objects.filter(pk=talk.pk).update(ai_escalated_at=utc(1, 5))
    return other
