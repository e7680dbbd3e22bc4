from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contacts.models import Contact, ContactTag, Conversation, Message, Tag

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_demo_fills_a_merchant_consistently_and_can_add_more(merchant):
    output = seed("--merchant-id", str(merchant.id), "--contacts", "300")
    assert "done: 300 contacts" in output and "contact tags:" in output

    contacts = Contact.objects.filter(merchant=merchant)
    assert contacts.count() == 300
    assert Tag.objects.filter(merchant=merchant).count() == 10
    assert ContactTag.objects.filter(contact__merchant=merchant).count() > 300
    conversations = Conversation.objects.filter(merchant=merchant)
    assert conversations.count() == 90
    assert Message.objects.filter(conversation__merchant=merchant).count() == 360
    # counters agree with the rows
    for contact in contacts.filter(conversation_count=1)[:20]:
        assert contact.conversations.count() == 1
    assert contacts.filter(conversation_count=1).count() == 90
    first = contacts.order_by("twitter_user_id").first()
    assert first is not None and set(first.attributes) == {
        "purchaseCount",
        "totalSpent",
        "membershipTier",
        "newsletter",
    }
    assert isinstance(first.attributes["newsletter"], bool)
    for contact in contacts.order_by("twitter_user_id")[:30]:  # the row's copy of the tags agrees with the links
        links = sorted(contact.contact_tags.values_list("tag__name", flat=True))
        assert sorted(contact.tag_names) == links

    seed("--merchant-id", str(merchant.id), "--contacts", "50")
    assert contacts.count() == 350
    assert Tag.objects.filter(merchant=merchant).count() == 10


def test_seed_demo_refuses_bad_input():
    for args in (
        ["--contacts", "0"],
        ["--merchant-id", "not-a-uuid"],
        ["--merchant-id", "8d1c2f8e-0000-4000-8000-000000000000"],
    ):
        with pytest.raises(CommandError) as error:
            seed(*args)
        assert error.value.returncode == 2


def test_seeded_contacts_are_listed_and_filtered_by_the_api(api, merchant):
    seed("--merchant-id", str(merchant.id), "--contacts", "100")
    listed = api.get("/api/v1/mkt-x/contacts", {"tags": "vip", "take": 100}).json()
    assert listed["pagination"]["total"] == ContactTag.objects.filter(tag__name="vip", tag__merchant=merchant).count()
    assert all("vip" in c["tags"] for c in listed["data"])


def test_seed_demo_adds_the_demo_flows_once_active(merchant):
    from automation.models import Flow, FlowVersion

    assert "demo flows: 2 created and activated" in seed("--merchant-id", str(merchant.id), "--contacts", "5")
    flows = {flow.name: flow for flow in Flow.objects.filter(merchant=merchant)}
    assert set(flows) == {"Welcome flow", "Price questions"}
    assert {(flow.status, flow.version, flow.trigger_type) for flow in flows.values()} == {
        ("active", 1, "new_follower"),
        ("active", 1, "message_received"),
    }
    assert FlowVersion.objects.filter(flow__merchant=merchant).count() == 2
    assert "demo flows: already there" in seed("--merchant-id", str(merchant.id), "--contacts", "5")
    assert Flow.objects.filter(merchant=merchant).count() == 2
