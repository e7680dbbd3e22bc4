"""Conversations: list filters, detail with messages, close, assign."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import (
    AccountFactory,
    ContactFactory,
    ConversationFactory,
    MerchantFactory,
    MessageFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
CONVERSATIONS = "/api/v1/mkt-x/conversations"


@pytest.fixture
def account(merchant):
    return AccountFactory.create(merchant=merchant)


def conversation(account, **kwargs):
    contact = ContactFactory.create(account=account, merchant=account.merchant)
    return ConversationFactory.create(contact=contact, **kwargs)


def test_list_with_contact_summary_latest_first(api, account):
    older = conversation(account, last_message_at=timezone.now() - timedelta(hours=1))
    newer = conversation(account)
    data = api.get(CONVERSATIONS).json()["data"]
    assert [c["id"] for c in data] == [str(newer.id), str(older.id)]
    assert set(data[0]) >= {
        "id", "contactId", "accountId", "status", "channel", "assignedToUserId", "messageCount", "startedAt",
        "lastMessageAt", "contact",
    }  # fmt: skip
    assert data[0]["channel"] == "direct_message"
    assert data[0]["contact"]["username"] == newer.contact.username


def test_list_filters(api, merchant, account, agent):
    other_account = AccountFactory.create(merchant=merchant)
    open_mine = conversation(account, assigned_to=agent)
    closed = conversation(account, status="closed")
    elsewhere = conversation(other_account)

    def listed(**params):
        return {c["id"] for c in api.get(CONVERSATIONS, params).json()["data"]}

    assert listed(status="closed") == {str(closed.id)}
    assert listed(status="open") == {str(open_mine.id), str(elsewhere.id)}
    assert listed(accountId=str(other_account.id)) == {str(elsewhere.id)}
    assert listed(assignedTo=str(agent.id)) == {str(open_mine.id)}
    for params in ({"status": "pending"}, {"assignedTo": "me"}, {"accountId": "1"}):
        assert api.get(CONVERSATIONS, params).status_code == 400


def test_the_list_uses_the_same_queries_for_one_or_a_hundred(api, account, count_queries):
    for _ in range(110):
        conversation(account)
    with count_queries() as one:
        assert len(api.get(CONVERSATIONS, {"take": 1, "status": "open"}).json()["data"]) == 1
    with count_queries() as hundred:
        assert len(api.get(CONVERSATIONS, {"take": 100, "status": "open"}).json()["data"]) == 100
    assert one["n"] == hundred["n"] == 3  # the caller, the count, the page with its contacts


def test_detail_has_messages_in_order_unless_excluded(api, account):
    c = conversation(account)
    first = MessageFactory.create(conversation=c, content="first")
    second = MessageFactory.create(
        conversation=c, content="second", direction="outbound", origin="staff", status="sent"
    )
    data = api.get(f"{CONVERSATIONS}/{c.id}").json()["data"]
    assert [m["id"] for m in data["messages"]] == [str(first.id), str(second.id)]
    assert set(data["messages"][0]) >= {
        "id",
        "conversationId",
        "direction",
        "type",
        "content",
        "attachments",
        "isFromBot",
        "sentAt",
    }
    without = api.get(f"{CONVERSATIONS}/{c.id}", {"includeMessages": "false"}).json()["data"]
    assert "messages" not in without
    assert api.get(f"{CONVERSATIONS}/{c.id}", {"includeMessages": "maybe"}).status_code == 400


def test_close_with_an_optional_reason(api, account):
    c = conversation(account)
    response = api.put(f"{CONVERSATIONS}/{c.id}/close", {"reason": "resolved"}, format="json")
    assert response.status_code == 200
    assert (response.json()["data"]["status"], response.json()["data"]["closeReason"]) == ("closed", "resolved")
    other = conversation(account)
    assert api.put(f"{CONVERSATIONS}/{other.id}/close").json()["data"]["status"] == "closed"


def test_assign_to_a_user_of_the_merchant_only(api, merchant, account, agent):
    c = conversation(account)
    assigned = api.post(f"{CONVERSATIONS}/{c.id}/assign", {"userId": str(agent.id)}, format="json")
    assert assigned.json()["data"]["assignedToUserId"] == str(agent.id)

    stranger = UserFactory.create(merchant=MerchantFactory.create())
    for user_id in (str(stranger.id), "8d1c2f8e-0000-4000-8000-000000000000", "nope"):
        response = api.post(f"{CONVERSATIONS}/{c.id}/assign", {"userId": user_id}, format="json")
        assert response.status_code == 400
        assert response.json()["details"]["field"] == "userId"
    c.refresh_from_db()
    assert c.assigned_to_id == agent.id
    assert (
        api.post(f"{CONVERSATIONS}/{c.id}/assign", {"userId": None}, format="json").json()["data"]["assignedToUserId"]
        is None
    )


def test_another_merchants_conversation_is_404(api):
    foreign = ConversationFactory.create()
    for method, path, body in (
        ("get", "", None),
        ("put", "/close", {}),
        ("post", "/assign", {"userId": None}),
        ("post", "/messages", {"content": "x"}),
    ):
        response = getattr(api, method)(f"{CONVERSATIONS}/{foreign.id}{path}", body, format="json")
        assert response.status_code == 404, path
    foreign.refresh_from_db()
    assert foreign.status == "open"


def test_agents_work_conversations(client_for, agent, account):
    c = conversation(account)
    client = client_for(agent)
    assert client.put(f"{CONVERSATIONS}/{c.id}/close", {"reason": "done"}, format="json").status_code == 200
