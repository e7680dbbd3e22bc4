"""Contacts: every endpoint of the reference, filters, tags, attributes, erasure and export."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contacts.models import ConsentEvent, Contact, ContactTag, Conversation, Message, Tag
from contacts.services.contacts import XProfile, contact_tags_add
from contacts.services.inbound import dm_record
from tests.factories import AccountFactory, ContactFactory, ConversationFactory, MessageFactory
from webhooks_app.models import InboundEvent

pytestmark = pytest.mark.django_db
CONTACTS = "/api/v1/mkt-x/contacts"


@pytest.fixture
def account(merchant):
    return AccountFactory.create(merchant=merchant, twitter_user_id="4337869213")


def contact(account, **kwargs) -> Contact:
    return ContactFactory.create(account=account, merchant=account.merchant, **kwargs)


def tagged(account, *tags: str, **kwargs) -> Contact:
    c = contact(account, **kwargs)
    if tags:
        contact_tags_add(contact=c, tags=list(tags))
    return c


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [c["id"] for c in response.json()["data"]]


def test_list_shows_the_documented_fields_newest_interaction_first(api, account):
    now = timezone.now()
    old = contact(account, last_interaction_at=now - timedelta(days=2), attributes={"purchaseCount": 5})
    new = tagged(account, "vip", "customer", last_interaction_at=now)

    data = api.get(CONTACTS).json()["data"]

    assert [c["id"] for c in data] == [str(new.id), str(old.id)]
    assert set(data[0]) >= {
        "id", "accountId", "twitterUserId", "username", "displayName", "profileImageUrl", "tags", "attributes",
        "conversationCount", "firstInteractionAt", "lastInteractionAt",
    }  # fmt: skip
    assert data[0]["tags"] == ["customer", "vip"]
    assert data[1]["attributes"] == {"purchaseCount": 5}


def test_tags_filter_needs_all_tags_unless_any(api, account):
    both = tagged(account, "vip", "customer")
    vip = tagged(account, "vip")
    tagged(account, "other")

    assert set(ids(api.get(CONTACTS, {"tags": "vip,customer"}))) == {str(both.id)}
    assert set(ids(api.get(CONTACTS, {"tags": "VIP, Customer"}))) == {str(both.id)}
    assert set(ids(api.get(CONTACTS, {"tags": "vip,customer", "tagsMatch": "any"}))) == {str(both.id), str(vip.id)}
    assert ids(api.get(CONTACTS, {"tags": "vip,nosuchtag"})) == []
    assert set(ids(api.get(CONTACTS, {"tags": "vip,nosuchtag", "tagsMatch": "any"}))) == {str(both.id), str(vip.id)}


def test_search_is_case_insensitive_on_username_and_display_name(api, account):
    john = contact(account, username="customer_john", display_name="John Doe")
    contact(account, username="jane", display_name="Jane Roe")
    assert ids(api.get(CONTACTS, {"search": "JOHN"})) == [str(john.id)]
    assert ids(api.get(CONTACTS, {"search": "@customer_j"})) == [str(john.id)]
    assert ids(api.get(CONTACTS, {"search": "doe"})) == [str(john.id)]


def test_account_filter_and_bad_filters(api, merchant, account):
    other_account = AccountFactory.create(merchant=merchant)
    mine = contact(account)
    contact(other_account)
    assert ids(api.get(CONTACTS, {"accountId": str(account.id)})) == [str(mine.id)]
    for params, field in (
        ({"accountId": "nope"}, "accountId"),
        ({"tagsMatch": "some"}, "tagsMatch"),
        ({"tags": "a b"}, "tags"),
    ):
        response = api.get(CONTACTS, params)
        assert response.status_code == 400 and response.json()["details"]["field"] == field


def test_the_list_uses_the_same_queries_for_one_or_a_hundred(api, account, count_queries):
    for i in range(120):
        tagged(account, "vip", f"t{i % 3}")
    with count_queries() as one:
        assert len(api.get(CONTACTS, {"take": 1, "tags": "vip", "search": "customer"}).json()["data"]) == 1
    with count_queries() as hundred:
        assert len(api.get(CONTACTS, {"take": 100, "tags": "vip", "search": "customer"}).json()["data"]) == 100
    # the caller, the tag ids, the count, the page (tags come with each row)
    assert one["n"] == hundred["n"] == 4


def test_detail_has_source_and_engagement(api, account):
    c = contact(account, messages_sent=15, messages_received=18, response_time_total=3 * 330, response_time_count=3)
    data = api.get(f"{CONTACTS}/{c.id}").json()["data"]
    assert data["source"] == "inbound_message"
    assert data["engagement"] == {
        "messagesSent": 15,
        "messagesReceived": 18,
        "averageResponseTime": "5m 30s",
        "averageResponseTimeSeconds": 330,
    }


def test_tags_are_added_idempotently_and_case_insensitively(api, account):
    c = contact(account)
    api.post(f"{CONTACTS}/{c.id}/tags", {"tags": ["VIP", "premium"]}, format="json")
    response = api.post(f"{CONTACTS}/{c.id}/tags", {"tags": ["vip"]}, format="json")
    assert response.json()["data"]["tags"] == ["premium", "vip"]
    assert Tag.objects.filter(merchant=account.merchant).count() == 2
    assert ContactTag.objects.filter(contact=c).count() == 2


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ([], "tags"),
        ("vip", "tags"),
        (["ok", "has space"], "tags[1]"),
        (["x" * 51], "tags[0]"),
        ([3], "tags[0]"),
        (["a"] * 21, "tags"),
    ],
)
def test_invalid_tags_are_refused_naming_the_field(api, account, tags, field):
    c = contact(account)
    response = api.post(f"{CONTACTS}/{c.id}/tags", {"tags": tags}, format="json")
    assert response.status_code == 400
    assert response.json()["details"]["field"] == field
    assert not ContactTag.objects.exists()


def test_removing_a_tag_and_a_tag_the_contact_lacks(api, account):
    c = tagged(account, "vip", "premium")
    assert api.delete(f"{CONTACTS}/{c.id}/tags/VIP").json()["data"]["tags"] == ["premium"]
    missing = api.delete(f"{CONTACTS}/{c.id}/tags/vip")
    assert missing.status_code == 404 and missing.json()["code"] == "RESOURCE_NOT_FOUND"


def test_attributes_merge_and_null_deletes(api, account):
    c = contact(account, attributes={"purchaseCount": 5, "notes": "old", "tier": "silver"})
    response = api.put(
        f"{CONTACTS}/{c.id}/attributes",
        {
            "attributes": {
                "purchaseCount": 6,
                "lastPurchaseDate": "2026-01-18",
                "notes": None,
                "vip": True,
                "spent": 12.5,
            }
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["data"]["attributes"] == {
        "purchaseCount": 6, "lastPurchaseDate": "2026-01-18", "tier": "silver", "vip": True, "spent": 12.5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"nested": {"a": 1}}, "attributes.nested"),
        ({"list": [1, 2]}, "attributes.list"),
        ({"1bad": 1}, "attributes.1bad"),
        ({"long": "x" * 1001}, "attributes.long"),
        ({f"k{i}": i for i in range(51)}, "attributes"),
        ("not an object", "attributes"),
    ],
)
def test_invalid_attributes_are_refused_and_nothing_changes(api, account, attributes, field):
    c = contact(account, attributes={"keep": 1})
    response = api.put(f"{CONTACTS}/{c.id}/attributes", {"attributes": attributes}, format="json")
    assert response.status_code == 400
    assert response.json()["details"]["field"] == field
    c.refresh_from_db()
    assert c.attributes == {"keep": 1}


def test_put_contact_updates_display_name_and_merges_attributes(api, account):
    c = contact(account, display_name="John", attributes={"a": 1})
    response = api.put(
        f"{CONTACTS}/{c.id}",
        {"displayName": "John Doe (VIP)", "attributes": {"preferredLanguage": "en"}},
        format="json",
    )
    data = response.json()["data"]
    assert data["displayName"] == "John Doe (VIP)"
    assert data["attributes"] == {"a": 1, "preferredLanguage": "en"}
    # X's name no longer overwrites the one staff chose
    dm_record(
        account=account, x_event_id="1", sender_id=c.twitter_user_id, recipient_id=account.twitter_user_id,
        text="hi", sent_at=timezone.now(), profiles={c.twitter_user_id: XProfile(id=c.twitter_user_id, name="Johnny")},
    )  # fmt: skip
    c.refresh_from_db()
    assert c.display_name == "John Doe (VIP)"


def test_put_contact_refuses_unknown_fields(api, account):
    c = contact(account)
    response = api.put(f"{CONTACTS}/{c.id}", {"displayname": "x"}, format="json")
    assert response.status_code == 400 and response.json()["details"]["field"] == "displayname"


def test_contact_conversations(api, account):
    c = contact(account)
    closed = ConversationFactory.create(contact=c, status="closed")
    open_ = ConversationFactory.create(contact=c)
    data = api.get(f"{CONTACTS}/{c.id}/conversations").json()
    assert {x["id"] for x in data["data"]} == {str(closed.id), str(open_.id)}
    assert data["pagination"]["total"] == 2
    only_open = api.get(f"{CONTACTS}/{c.id}/conversations", {"status": "open"}).json()["data"]
    assert [x["id"] for x in only_open] == [str(open_.id)]
    assert set(only_open[0]) == {"id", "contactId", "status", "messageCount", "startedAt", "lastMessageAt"}


def test_another_merchants_contact_is_404_everywhere(api, account):
    foreign = ContactFactory.create()
    for method, path, body in (
        ("get", f"{CONTACTS}/{foreign.id}", None),
        ("put", f"{CONTACTS}/{foreign.id}", {"displayName": "x"}),
        ("post", f"{CONTACTS}/{foreign.id}/tags", {"tags": ["x"]}),
        ("put", f"{CONTACTS}/{foreign.id}/attributes", {"attributes": {"a": 1}}),
        ("get", f"{CONTACTS}/{foreign.id}/conversations", None),
        ("get", f"{CONTACTS}/{foreign.id}/export", None),
        ("delete", f"{CONTACTS}/{foreign.id}", None),
    ):
        response = getattr(api, method)(path, body, format="json")
        assert response.status_code == 404, (method, path)
    assert Contact.objects.filter(pk=foreign.pk).exists()
    assert not foreign.contact_tags.exists()


def test_agents_work_contacts(client_for, agent, account):
    c = contact(account)
    client = client_for(agent)
    assert client.post(f"{CONTACTS}/{c.id}/tags", {"tags": ["vip"]}, format="json").status_code == 200
    assert client.put(f"{CONTACTS}/{c.id}/attributes", {"attributes": {"a": 1}}, format="json").status_code == 200


# --- erasure and export ----------------------------------------------------------------------------------------------


def _inbound_event(account, contact: Contact, text: str) -> InboundEvent:
    return InboundEvent.objects.create(
        dedup_key=f"dm:{text}:{account.twitter_user_id}",
        kind="direct_message",
        for_user_id=account.twitter_user_id,
        payload={
            "for_user_id": account.twitter_user_id,
            "direct_message_events": [
                {"type": "message_create", "id": "1", "created_timestamp": "1", "message_create": {
                    "sender_id": contact.twitter_user_id, "target": {"recipient_id": account.twitter_user_id},
                    "message_data": {"text": text, "entities": {}}}}
            ],
            "users": {
                contact.twitter_user_id: {"id": contact.twitter_user_id, "name": "John Doe", "screen_name": "john"}
            },
        },
        status="processed",
    )  # fmt: skip


def test_erasing_a_contact_removes_everything_and_redacts_the_raw_events(api, account):
    john = tagged(account, "vip", display_name="John Doe")
    other = contact(account)
    conversation = ConversationFactory.create(contact=john)
    MessageFactory.create(conversation=conversation, content="my address is 1 Main St")
    ConsentEvent.objects.create(merchant=account.merchant, contact=john, action="opt_out", keyword="stop")
    raw = _inbound_event(account, john, "my address is 1 Main St")
    kept = _inbound_event(account, other, "unrelated words")

    response = api.delete(f"{CONTACTS}/{john.id}")

    assert response.status_code == 200 and response.json() == {"success": True, "data": None}
    assert not Contact.objects.filter(pk=john.pk).exists()
    assert not Conversation.objects.filter(contact_id=john.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert not ConsentEvent.objects.exists() and not ContactTag.objects.filter(contact_id=john.pk).exists()
    raw.refresh_from_db()
    assert "1 Main St" not in str(raw.payload) and "John Doe" not in str(raw.payload)
    kept.refresh_from_db()
    assert "unrelated words" in str(kept.payload)
    assert api.get(f"{CONTACTS}/{john.id}").status_code == 404


def test_export_holds_everything_about_the_contact(api, account):
    john = tagged(account, "vip", attributes={"tier": "gold"})
    conversation = ConversationFactory.create(contact=john)
    MessageFactory.create(conversation=conversation, content="hello")
    ConsentEvent.objects.create(merchant=account.merchant, contact=john, action="opt_out", keyword="stop")

    data = api.get(f"{CONTACTS}/{john.id}/export").json()["data"]

    assert data["contact"]["id"] == str(john.id)
    assert data["tags"] == ["vip"] and data["attributes"] == {"tier": "gold"}
    assert data["consent"][0]["action"] == "opt_out"
    assert data["conversations"][0]["messages"][0]["content"] == "hello"


def test_the_admin_shows_contacts_conversations_messages_and_consent(owner, account):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    john = tagged(account, "vip")
    conversation = ConversationFactory.create(contact=john)
    MessageFactory.create(conversation=conversation, content="visible in the inline")
    ConsentEvent.objects.create(merchant=account.merchant, contact=john, action="opt_out", keyword="stop")
    for path in (
        "/admin/contacts/contact/",
        "/admin/contacts/contact/?opted_out__exact=0&contact_tags__tag__name=vip",
        f"/admin/contacts/contact/{john.id}/change/",
        "/admin/contacts/conversation/",
        "/admin/contacts/message/",
        "/admin/contacts/consentevent/",
        "/admin/contacts/tag/",
    ):
        assert staff.get(path).status_code == 200, path
    assert (
        "visible in the inline" in staff.get(f"/admin/contacts/conversation/{conversation.id}/change/").content.decode()
    )
    assert staff.get("/admin/contacts/message/add/").status_code == 403


def test_the_hand_written_outputs_match_their_declared_fields(account):
    """The list outputs are written out for speed; the declared fields (the schema) must say the same."""
    from contacts.serializers import ContactDetailOutput, ContactOutput, ConversationDetailOutput, ConversationOutput

    c = tagged(account, "vip")
    conversation = ConversationFactory.create(contact=c)
    for serializer, obj in (
        (ContactOutput, c),
        (ContactDetailOutput, c),
        (ConversationOutput, conversation),
        (ConversationDetailOutput, conversation),
    ):
        declared = set(serializer().fields)
        assert set(serializer(obj).data) == declared, serializer.__name__
