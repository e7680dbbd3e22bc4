"""Who answers an inbound DM, decided in one place (webhooks_app/handlers.py): a consent keyword, an execution
waiting for the reply, `message_received` flows, (the chatbot,) the away message. And the events the contacts
services tell automation through contacts/hooks.py: a contact created, tags newly added, a campaign reply."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from django.utils import timezone

from automation import triggers
from automation.models import Execution, Flow, FlowVersion, Step
from campaigns.models import Campaign, CampaignRun, Delivery
from contacts.hooks import ContactHooks, hooks_register, hooks_registered, hooks_set
from contacts.models import ConsentEvent, Contact, Conversation, Message
from contacts.seed import seed_demo
from contacts.services.contacts import contact_tags_add
from mktx.accounts.models import Account
from mktx.memo import batch_memo
from tests.factories import AccountFactory, ContactFactory
from webhooks_app import handlers
from webhooks_app.events import DirectMessageEvent, FollowEvent, XUserInfo

pytestmark = pytest.mark.django_db

SHOP_ID = "4337869213"
JOHN_ID = "7700000001"
CLOSED_ALL_WEEK = {"enabled": True, "timezone": "UTC", "schedule": {}}
AWAY = "We are closed, back at 9am."

_event_ids = count(960000000000000001)
_in_runs: list[bool] = [False]


@pytest.fixture(autouse=True, params=["alone", "in a run"])
def dm_path(request) -> Iterator[None]:
    """Each test twice: a DM handled alone (`_direct_message`), and as a drain's run of DMs handles it
    (`direct_messages`, in a batch memo: the deciders' reads prefetched), which must decide the same."""
    _in_runs[0] = request.param == "in a run"
    yield
    _in_runs[0] = False


@pytest.fixture
def shop(merchant) -> Account:
    return AccountFactory.create(merchant=merchant, twitter_user_id=SHOP_ID, username="goodgo_shop")


@pytest.fixture
def closed(shop) -> Account:
    """The shop outside its business hours, with an away message."""
    Account.objects.filter(pk=shop.pk).update(
        auto_reply_enabled=True, business_hours=CLOSED_ALL_WEEK, away_message=AWAY
    )
    shop.refresh_from_db()
    return shop


@pytest.fixture
def system_dms(monkeypatch) -> list[str]:
    """The texts of the system DMs (consent confirmations, away messages) queued after commit."""
    texts: list[str] = []

    def enqueue(name: str, conversation_id: str, text: str, key: str, **kwargs: Any) -> bool:
        texts.append(text)
        return True

    monkeypatch.setattr("contacts.services.consent.task_enqueue", enqueue)
    return texts


@pytest.fixture
def calls(monkeypatch) -> Callable[..., list[str]]:
    """Replace the trigger entry points with recorders: `calls(reply_take=True)` makes reply_take answer True.
    Answers the list of the names called, in order."""

    def install(**answers: bool) -> list[str]:
        called: list[str] = []

        def recorder(name: str) -> Callable[..., Any]:
            def record(**kwargs: Any) -> Any:
                called.append(name)
                return answers.get(name, False)

            return record

        for name in ("reply_take", "message_received", "follower_added"):
            monkeypatch.setattr(triggers, name, recorder(name))
        return called

    return install


@pytest.fixture
def fired() -> Iterator[list[tuple[str, Any, Any]]]:
    """The contacts hooks replaced by recorders: (event, contact id, tags or campaign id) for each fire."""
    seen: list[tuple[str, Any, Any]] = []
    before = hooks_register(
        contact_created=lambda *, contact: seen.append(("contact_created", contact.pk, None)),
        tags_added=lambda *, contact, tags: seen.append(("tags_added", contact.pk, list(tags))),
        campaign_replied=lambda *, contact, campaign_id: seen.append(("campaign_replied", contact.pk, campaign_id)),
    )
    yield seen
    hooks_set(before)


def dm(
    shop: Account, text: str, capture: Any, *, sender: str = JOHN_ID, recipient: str = SHOP_ID, event_id: str = ""
) -> DirectMessageEvent:
    event = DirectMessageEvent(
        event_id=event_id or str(next(_event_ids)),
        for_user_id=SHOP_ID,
        sender_id=sender,
        recipient_id=recipient,
        text=text,
        created_at=timezone.now(),
        users={JOHN_ID: XUserInfo(id=JOHN_ID, screen_name="customer_john", name="John Doe")},
    )
    with capture(execute=True):
        if _in_runs[0] and sender != SHOP_ID:  # a run takes customers' DMs, not echoes
            with batch_memo():
                handlers.direct_messages([(event, shop)])
        else:
            handlers._direct_message(event, shop)
    return event


def follow(shop: Account, kind: str = "follow", *, follower: str = JOHN_ID) -> None:
    handlers._follow(
        FollowEvent(
            for_user_id=SHOP_ID,
            type=kind,
            source=XUserInfo(id=follower, screen_name="customer_john"),
            target=XUserInfo(id=SHOP_ID, screen_name="goodgo_shop"),
            created_at=timezone.now(),
        ),
        shop,
    )


def john() -> Contact:
    return Contact.objects.get(twitter_user_id=JOHN_ID)


# --- with the trigger stubs: the inbox as before ---------------------------------------------------------------------


def test_it_confirms_a_stop_once_and_sends_it_no_away_message(closed, system_dms, django_capture_on_commit_callbacks):
    dm(closed, "STOP", django_capture_on_commit_callbacks)
    dm(closed, "stop", django_capture_on_commit_callbacks)  # already out: nothing to confirm

    assert system_dms == ["You are unsubscribed from our marketing messages. Reply START to subscribe again."]
    assert john().opted_out is True
    assert ConsentEvent.objects.count() == 1


def test_it_sends_the_away_message_outside_business_hours_once(closed, system_dms, django_capture_on_commit_callbacks):
    dm(closed, "Hello?", django_capture_on_commit_callbacks)
    dm(closed, "Anyone there?", django_capture_on_commit_callbacks)
    assert system_dms == [AWAY]


def test_it_sends_no_away_message_within_business_hours(shop, system_dms, django_capture_on_commit_callbacks):
    dm(shop, "Hello?", django_capture_on_commit_callbacks)
    assert system_dms == []
    assert Message.objects.filter(direction="inbound").count() == 1


def test_it_cancels_the_running_executions_of_a_contact_who_says_stop(
    shop, system_dms, django_capture_on_commit_callbacks
):
    # given John in a flow, waiting for his reply
    dm(shop, "Hi", django_capture_on_commit_callbacks)
    contact = john()
    flow = Flow.objects.create(merchant=shop.merchant, name="Welcome", status="active", trigger_type="manual")
    version = FlowVersion.objects.create(flow=flow, number=1, trigger_type="manual")
    now = timezone.now()
    execution = Execution.objects.create(
        merchant=shop.merchant, flow=flow, version=version, contact=contact, current_node_id="ask",
        waiting_for="reply", due_at=now + timedelta(hours=1), started_at=now,
    )  # fmt: skip
    step = Step.objects.create(
        execution=execution, node_id="ask", type="wait_for_reply", status="waiting", started_at=now
    )
    other = ContactFactory.create(account=shop)
    untouched = Execution.objects.create(
        merchant=shop.merchant, flow=flow, version=version, contact=other, started_at=now
    )

    # when he says STOP
    dm(shop, "STOP", django_capture_on_commit_callbacks)

    # then his execution and its waiting step are cancelled, another contact's not
    execution.refresh_from_db()
    step.refresh_from_db()
    untouched.refresh_from_db()
    assert (execution.status, execution.error, execution.waiting_for, execution.due_at) == (
        "cancelled", "opted_out", "", None
    )  # fmt: skip
    assert step.status == "cancelled"
    assert untouched.status == "running"


# --- the order of who answers ----------------------------------------------------------------------------------------


def test_it_calls_no_flow_for_a_consent_keyword(closed, calls, system_dms, django_capture_on_commit_callbacks):
    called = calls(reply_take=True, message_received=True)
    dm(closed, "STOP", django_capture_on_commit_callbacks)
    dm(closed, "start", django_capture_on_commit_callbacks)
    assert called == []
    assert len(system_dms) == 2  # the two confirmations, no away message


def test_it_stops_at_an_execution_that_takes_the_reply(closed, calls, system_dms, django_capture_on_commit_callbacks):
    called = calls(reply_take=True, message_received=True)
    dm(closed, "my order is #123", django_capture_on_commit_callbacks)
    assert called == ["reply_take"]
    assert system_dms == []


def test_it_sends_no_away_message_when_a_flow_answers(closed, calls, system_dms, django_capture_on_commit_callbacks):
    called = calls(message_received=True)
    dm(closed, "price?", django_capture_on_commit_callbacks)
    assert called == ["reply_take", "message_received"]
    assert system_dms == []


def test_it_sends_the_away_message_after_no_flow_answered(
    closed, calls, system_dms, django_capture_on_commit_callbacks
):
    called = calls()
    dm(closed, "price?", django_capture_on_commit_callbacks)
    assert called == ["reply_take", "message_received"]
    assert system_dms == [AWAY]


def test_it_records_echoes_and_calls_no_trigger(closed, calls, system_dms, django_capture_on_commit_callbacks):
    called = calls(reply_take=True, message_received=True)
    dm(closed, "Written in X's app", django_capture_on_commit_callbacks, sender=SHOP_ID, recipient=JOHN_ID)
    assert called == []
    assert system_dms == []
    assert Message.objects.get().origin == "x_app"


def test_it_decides_nothing_for_a_dm_stored_already(closed, calls, system_dms, django_capture_on_commit_callbacks):
    called = calls()
    event = dm(closed, "Hello?", django_capture_on_commit_callbacks)
    dm(closed, "Hello?", django_capture_on_commit_callbacks, event_id=event.event_id)  # X delivered it twice
    assert called == ["reply_take", "message_received"]
    assert system_dms == [AWAY]
    assert Message.objects.count() == 1


def test_it_tells_a_new_follower_once(shop, calls):
    called = calls()
    follow(shop)
    follow(shop)  # X told it again
    assert called == ["follower_added"]
    follow(shop, "unfollow")
    assert called == ["follower_added"]
    follow(shop)  # back again: a new follow
    assert called == ["follower_added", "follower_added"]
    follow(shop, follower=SHOP_ID)  # the account itself is no contact
    assert len(called) == 2


def test_it_tells_a_follower_already_a_contact(shop, calls, django_capture_on_commit_callbacks):
    called = calls()
    dm(shop, "Hi", django_capture_on_commit_callbacks)
    called.clear()
    follow(shop)
    assert called == ["follower_added"]
    assert john().following is True


# --- the contacts hooks ----------------------------------------------------------------------------------------------


def test_automation_listens_to_the_contacts_hooks():
    assert hooks_registered() == ContactHooks(
        contact_created=triggers.contact_created,
        tags_added=triggers.tags_added,
        campaign_replied=triggers.campaign_replied,
    )


def test_a_new_contact_is_told_once_from_any_source(shop, fired, django_capture_on_commit_callbacks):
    dm(shop, "Hi", django_capture_on_commit_callbacks)
    dm(shop, "Hi again", django_capture_on_commit_callbacks)  # the same contact, updated
    follow(shop)
    assert fired == [("contact_created", john().pk, None)]

    follow(shop, follower="7700000002")
    dm(shop, "Hello from my phone", django_capture_on_commit_callbacks, sender=SHOP_ID, recipient="7700000003")
    assert [kind for kind, *_ in fired] == ["contact_created"] * 3
    assert Contact.objects.count() == 3


def test_only_tags_newly_added_are_told(shop, fired):
    contact = ContactFactory.create(account=shop)
    contact_tags_add(contact=contact, tags=["vip", "new"])
    contact_tags_add(contact=contact, tags=["VIP", "other"])
    contact_tags_add(contact=contact, tags=["new"])  # had them all
    assert fired == [("tags_added", contact.pk, ["vip", "new"]), ("tags_added", contact.pk, ["other"])]


def test_tags_added_through_the_api_are_told(api, shop, fired):
    contact = ContactFactory.create(account=shop)
    response = api.post(f"/api/v1/mkt-x/contacts/{contact.id}/tags", {"tags": ["vip"]}, format="json")
    assert response.status_code == 200, response.content
    assert fired == [("tags_added", contact.pk, ["vip"])]


def test_demo_data_tells_nothing(merchant, fired):
    seed_demo(merchant=merchant, contacts=30, progress=lambda line: None)
    assert Contact.objects.filter(merchant=merchant).count() == 30
    assert fired == []


def _delivered(shop: Account, contact: Contact, *, ago: timedelta) -> Campaign:
    """A campaign DM sent to the contact `ago`."""
    sent = timezone.now() - ago
    campaign = Campaign.objects.create(merchant=shop.merchant, name=f"sent {ago}", status="completed")
    run = CampaignRun.objects.create(campaign=campaign, number=1, started_at=sent)
    Delivery.objects.create(
        run=run, campaign=campaign, contact=contact, account=shop, status="sent", sent_at=sent, created_at=sent
    )
    return campaign


def test_each_campaign_a_reply_is_attributed_to_is_told_once(
    shop, fired, system_dms, settings, django_capture_on_commit_callbacks
):
    contact = ContactFactory.create(account=shop, twitter_user_id=JOHN_ID)
    spring = _delivered(shop, contact, ago=timedelta(hours=2))
    summer = _delivered(shop, contact, ago=timedelta(hours=1))
    late = _delivered(shop, contact, ago=timedelta(hours=settings.MKTX_REPLY_ATTRIBUTION_HOURS + 1))

    dm(shop, "Is it still on?", django_capture_on_commit_callbacks)
    dm(shop, "Hello?", django_capture_on_commit_callbacks)  # replied already

    told = sorted((str(campaign_id) for kind, _, campaign_id in fired if kind == "campaign_replied"))
    assert told == sorted([str(spring.pk), str(summer.pk)])
    assert Delivery.objects.filter(replied_at__isnull=False).count() == 2
    assert Delivery.objects.get(campaign=late).replied_at is None


def test_a_consent_keyword_is_attributed_but_tells_no_campaign_reply(
    shop, fired, system_dms, django_capture_on_commit_callbacks
):
    contact = ContactFactory.create(account=shop, twitter_user_id=JOHN_ID)
    _delivered(shop, contact, ago=timedelta(hours=1))
    dm(shop, "STOP", django_capture_on_commit_callbacks)
    assert Delivery.objects.get().replied_at is not None
    assert [kind for kind, *_ in fired] == []


@pytest.fixture
def bot_replies(monkeypatch) -> list[str]:
    """The inbound DMs the bot was queued to answer (their message ids)."""
    queued: list[str] = []

    def enqueue(name: str, message_id: str, **kwargs: Any) -> bool:
        queued.append(message_id)
        return True

    monkeypatch.setattr("chatbot.queue.task_enqueue", enqueue)
    return queued


def test_the_bot_answers_instead_of_the_away_message_and_never_a_consent_word(
    closed, system_dms, bot_replies, django_capture_on_commit_callbacks
):
    from chatbot.models import AISettings

    AISettings.objects.create(merchant=closed.merchant, enabled=True, auto_reply=True)
    dm(closed, "Hello? where is my order", django_capture_on_commit_callbacks)
    assert len(bot_replies) == 1 and system_dms == []  # the bot replaces the away message
    dm(closed, "STOP", django_capture_on_commit_callbacks)
    assert len(bot_replies) == 1  # a consent word never reaches the bot
    assert system_dms == ["You are unsubscribed from our marketing messages. Reply START to subscribe again."]


def test_the_bot_leaves_an_escalated_or_assigned_conversation_to_people(
    shop, bot_replies, agent, django_capture_on_commit_callbacks
):
    from chatbot.models import AISettings

    AISettings.objects.create(merchant=shop.merchant, enabled=True, auto_reply=True)
    dm(shop, "hi", django_capture_on_commit_callbacks)
    conversation = Conversation.objects.get()
    Conversation.objects.filter(pk=conversation.pk).update(ai_status="escalated")
    dm(shop, "hello?", django_capture_on_commit_callbacks)
    Conversation.objects.filter(pk=conversation.pk).update(ai_status="none", assigned_to=agent)
    dm(shop, "anyone?", django_capture_on_commit_callbacks)
    assert len(bot_replies) == 1


def test_the_bot_answers_only_what_no_flow_took(shop, bot_replies, django_capture_on_commit_callbacks):
    """Real flows this time: a reply an execution waits for, and a `message_received` flow that sends, are theirs;
    a `message_received` flow that only tags leaves the DM to the bot."""
    from chatbot.models import AISettings
    from tests.flow_helpers import active_flow, node, run_due

    AISettings.objects.create(merchant=shop.merchant, enabled=True, auto_reply=True)
    dm(shop, "hi", django_capture_on_commit_callbacks)  # the bot's
    waiting = active_flow(shop.merchant, "manual", [node("w", "wait_for_reply", timeout=3600)], name="Wait")
    triggers.contacts_enroll(flow=waiting, contacts=[john()])
    run_due()
    dm(shop, "size M please", django_capture_on_commit_callbacks)  # the waiting execution's
    assert Execution.objects.get(flow=waiting).status == "completed"
    active_flow(
        shop.merchant,
        "message_received",
        [node("s", "send_message", content="Our prices: shop.example/prices")],
        name="Prices",
        keywords=["price"],
        match="contains",
    )
    active_flow(shop.merchant, "message_received", [node("t", "add_tag", tags=["asked"])], name="Tagger")
    dm(shop, "what is the price?", django_capture_on_commit_callbacks)  # the sending flow's
    dm(shop, "do you ship to Hue?", django_capture_on_commit_callbacks)  # only tagged: the bot's
    assert len(bot_replies) == 2
    assert [m.content for m in Message.objects.filter(pk__in=bot_replies).order_by("created_at")] == [
        "hi",
        "do you ship to Hue?",
    ]
