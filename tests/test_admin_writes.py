"""The back office writes only through the services the API uses: a contact deleted in the admin is erased, a
campaign or template change goes through `campaign_update` / `template_update` and shows their refusals."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.campaigns import schedule_of
from campaigns.models import Campaign, Template
from contacts import erasure
from contacts.erasure import ErasedContact, erasure_hooks
from contacts.models import ConsentEvent, Contact, ContactTag, Conversation, Message, Segment, Tag
from contacts.services.contacts import contact_erase, contact_tags_add
from tests.factories import AccountFactory, ContactFactory, ConversationFactory, MerchantFactory, MessageFactory
from webhooks_app.models import InboundEvent
from webhooks_app.redaction import raw_events_redact

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(merchant):
    return AccountFactory.create(merchant=merchant, twitter_user_id="4337869213")


def _person(account, name: str) -> tuple[Contact, Conversation, InboundEvent]:
    contact = ContactFactory.create(account=account, merchant=account.merchant, display_name=name)
    contact_tags_add(contact=contact, tags=["vip"])
    conversation = ConversationFactory.create(contact=contact)
    MessageFactory.create(conversation=conversation, content=f"{name} lives at 1 Main St")
    ConsentEvent.objects.create(merchant=account.merchant, contact=contact, action="opt_out", keyword="stop")
    raw = InboundEvent.objects.create(
        dedup_key=f"dm:{contact.twitter_user_id}",
        kind="direct_message",
        for_user_id=account.twitter_user_id,
        payload={
            "for_user_id": account.twitter_user_id,
            "direct_message_events": [
                {"type": "message_create", "id": "1", "created_timestamp": "1", "message_create": {
                    "sender_id": contact.twitter_user_id, "target": {"recipient_id": account.twitter_user_id},
                    "message_data": {"text": f"{name} lives at 1 Main St", "entities": {}}}}
            ],
            "users": {contact.twitter_user_id: {"id": contact.twitter_user_id, "name": name, "screen_name": "x"}},
        },
        status="processed",
    )  # fmt: skip
    return contact, conversation, raw


def _assert_erased(contact_id: uuid.UUID | None, conversation: Conversation, raw: InboundEvent, name: str) -> None:
    assert contact_id is not None
    assert not Contact.objects.filter(pk=contact_id).exists()
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert not ContactTag.objects.filter(contact_id=contact_id).exists()
    assert not ConsentEvent.objects.filter(contact_id=contact_id).exists()
    raw.refresh_from_db()
    assert "1 Main St" not in json.dumps(raw.payload) and name not in json.dumps(raw.payload)


# --- contacts: delete is erasure ------------------------------------------------------------------------------------


def test_deleting_a_contact_in_the_admin_erases_it(staff, account):
    # given
    john, conversation, raw = _person(account, "John Doe")
    kept, _, kept_raw = _person(account, "Kate Kept")
    # when
    response = staff.post(f"/admin/contacts/contact/{john.pk}/delete/", {"post": "yes"})
    # then
    assert response.status_code == 302
    _assert_erased(john.pk, conversation, raw, "John Doe")
    kept_raw.refresh_from_db()
    assert Contact.objects.filter(pk=kept.pk).exists() and "Kate Kept" in json.dumps(kept_raw.payload)


def test_the_admins_bulk_delete_of_contacts_erases_each(staff, account):
    john, john_conversation, john_raw = _person(account, "John Doe")
    jane, jane_conversation, jane_raw = _person(account, "Jane Roe")
    response = staff.post(
        "/admin/contacts/contact/",
        {"action": "delete_selected", "_selected_action": [str(john.pk), str(jane.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    _assert_erased(john.pk, john_conversation, john_raw, "John Doe")
    _assert_erased(jane.pk, jane_conversation, jane_raw, "Jane Roe")


# --- the erasure hook -----------------------------------------------------------------------------------------------


def test_the_inbound_edge_registers_its_redaction_as_an_erasure_hook():
    assert erasure_hooks()["webhooks_app.raw_events"] is raw_events_redact


def test_the_erasure_calls_every_registered_hook_with_who_was_erased(account, monkeypatch):
    # given a hook of our own beside the inbound edge's
    seen: list[ErasedContact] = []

    def hook(erased: ErasedContact) -> int:
        seen.append(erased)
        return 1

    monkeypatch.setattr(erasure, "_hooks", {**erasure.erasure_hooks(), "test": hook})
    john, conversation, raw = _person(account, "John Doe")
    expected = ErasedContact(john.pk, account.merchant_id, account.twitter_user_id, john.twitter_user_id)
    # when
    contact_erase(contact=john)
    # then
    assert seen == [expected]
    _assert_erased(expected.contact_id, conversation, raw, "John Doe")


def test_a_failing_hook_undoes_the_erasure(account, monkeypatch):
    def broken(erased: ErasedContact) -> int:
        raise RuntimeError("store unavailable")

    monkeypatch.setattr(erasure, "_hooks", {**erasure.erasure_hooks(), "broken": broken})
    john, _, raw = _person(account, "John Doe")
    john_id = john.pk
    with pytest.raises(RuntimeError):
        contact_erase(contact=john)
    assert Contact.objects.filter(pk=john_id).exists()
    raw.refresh_from_db()
    assert "1 Main St" in json.dumps(raw.payload)


def test_contacts_knows_neither_the_inbound_edge_nor_xs_payloads():
    source = "\n".join(p.read_text() for p in Path("contacts").rglob("*.py") if "migrations" not in p.parts)
    for word in ("webhooks_app", "get_model", "direct_message_events", "message_create"):
        assert word not in source, word


# --- campaigns: changes go through campaign_update --------------------------------------------------------------------


@pytest.fixture
def setup(merchant):
    template = Template.objects.create(merchant=merchant, name="Sale", content="Sale today")
    other_template = Template.objects.create(merchant=merchant, name="Other", content="Something else")
    segment = Segment.objects.create(merchant=merchant, name="all", conditions=[])
    return template, other_template, segment


def _campaign(merchant, template, segment, status: str, **fields) -> Campaign:
    campaign = Campaign.objects.create(
        merchant=merchant, name="Spring", type="promotional", template=template, status=status, **fields
    )
    campaign.segments.set([segment])
    return campaign


def _change(staff: Client, campaign: Campaign, **fields):
    data = {
        "name": campaign.name,
        "type": campaign.type,
        "template": str(campaign.template_id),
        "segments": [str(s.pk) for s in campaign.segments.all()],
        "variables": json.dumps(campaign.variables),
        "schedule": json.dumps(schedule_of(campaign).as_json()),
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "runs-MIN_NUM_FORMS": "0",
        "runs-MAX_NUM_FORMS": "1000",
        **fields,
    }
    return staff.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", data)


@pytest.mark.parametrize("status", ["running", "paused", "completed"])
def test_the_admin_does_not_change_the_template_of_a_campaign_past_scheduled(staff, merchant, setup, status):
    template, other_template, segment = setup
    campaign = _campaign(merchant, template, segment, status)
    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'name="template"' not in page and 'name="segments"' not in page and 'name="schedule"' not in page

    _change(staff, campaign, template=str(other_template.pk), name="Renamed", variables='{"x": "1"}')

    campaign.refresh_from_db()
    assert (campaign.template_id, campaign.name, campaign.variables) == (template.pk, "Spring", {})


def test_a_draft_changed_in_the_admin_is_saved_by_the_service(staff, merchant, setup):
    template, other_template, segment = setup
    campaign = _campaign(merchant, template, segment, "draft")
    response = _change(staff, campaign, template=str(other_template.pk), name="  Renamed  ")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.template_id, campaign.name) == (other_template.pk, "Renamed")  # the service strips the name


def test_the_services_refusal_is_a_form_error_and_nothing_changes(staff, merchant, setup):
    # given a scheduled campaign, moved to a start in the past
    template, other_template, segment = setup
    start = (timezone.now() + timedelta(days=2)).isoformat()
    campaign = _campaign(merchant, template, segment, "scheduled", start_at=parse_datetime(start))
    past = json.dumps({"startAt": (timezone.now() - timedelta(days=1)).isoformat()})
    # when
    response = _change(staff, campaign, schedule=past, template=str(other_template.pk))
    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "schedule" in errors and "future" in errors["schedule"][0]
    campaign.refresh_from_db()
    assert (campaign.template_id, campaign.start_at) == (template.pk, parse_datetime(start))


def test_a_campaign_that_started_while_its_form_was_open_is_refused(staff, merchant, setup, monkeypatch):
    template, other_template, segment = setup
    campaign = _campaign(merchant, template, segment, "draft")
    Campaign.objects.filter(pk=campaign.pk).update(status="running")  # the form was loaded as a draft
    monkeypatch.setattr("campaigns.admin.CampaignAdmin.get_readonly_fields", lambda self, request, obj=None: ())
    response = _change(staff, campaign, template=str(other_template.pk))
    assert response.status_code == 200
    assert "Cannot update a running campaign" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.template_id == template.pk


def test_another_merchants_template_is_not_offered(staff, merchant, setup):
    template, _, segment = setup
    foreign = Template.objects.create(merchant=MerchantFactory.create(), name="Foreign", content="x")
    campaign = _campaign(merchant, template, segment, "draft")
    response = _change(staff, campaign, template=str(foreign.pk))
    assert response.status_code == 200 and "template" in response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.template_id == template.pk


def test_campaigns_are_neither_added_nor_deleted_in_the_admin(staff, merchant, setup):
    template, _, segment = setup
    campaign = _campaign(merchant, template, segment, "draft")
    assert staff.get("/admin/campaigns/campaign/add/").status_code == 403
    assert staff.post(f"/admin/campaigns/campaign/{campaign.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Campaign.objects.filter(pk=campaign.pk).exists()


# --- templates: template_update and template_delete -----------------------------------------------------------------


def _change_template(staff: Client, template: Template, **fields):
    data = {
        "name": template.name,
        "type": template.type,
        "content": template.content,
        "variables": json.dumps(template.variables),
        "options": json.dumps(template.options),
        "card": json.dumps(template.card),
        **fields,
    }
    return staff.post(f"/admin/campaigns/template/{template.pk}/change/", data)


def test_a_template_change_is_validated_by_the_service(staff, merchant, setup):
    template, _, _ = setup
    response = _change_template(staff, template, content="Hi {{name}}")  # a placeholder it does not declare
    assert response.status_code == 200 and response.context["adminform"].form.errors
    template.refresh_from_db()
    assert template.content == "Sale today"
    assert _change_template(staff, template, content="Sale tomorrow").status_code == 302
    template.refresh_from_db()
    assert template.content == "Sale tomorrow"


def test_a_template_used_by_a_running_campaign_is_not_deleted_in_the_admin(staff, merchant, setup):
    template, _, segment = setup
    _campaign(merchant, template, segment, "running")
    assert staff.post(f"/admin/campaigns/template/{template.pk}/delete/", {"post": "yes"}).status_code == 403
    staff.post(
        "/admin/campaigns/template/",
        {"action": "delete_selected", "_selected_action": [str(template.pk)], "post": "yes"},
    )
    assert Template.objects.filter(pk=template.pk).exists()


# --- segments: segment_update and segment_delete --------------------------------------------------------------------


def _change_segment(staff: Client, segment: Segment, **fields):
    data = {"name": segment.name, "conditions": json.dumps(segment.conditions), **fields}
    return staff.post(f"/admin/contacts/segment/{segment.pk}/change/", data)


def test_a_segment_change_is_validated_and_counted_by_the_service(staff, account):
    ContactFactory.create(account=account, merchant=account.merchant, username="ann")
    segment = Segment.objects.create(merchant=account.merchant, name="nobody", conditions=[], contact_count=0)
    bad = json.dumps([{"field": "tags", "operator": "explodes", "value": "vip"}])
    response = _change_segment(staff, segment, conditions=bad)
    assert response.status_code == 200 and "conditions" in response.context["adminform"].form.errors
    segment.refresh_from_db()
    assert segment.conditions == []

    assert _change_segment(staff, segment, name="  everyone  ").status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.contact_count) == ("everyone", 1)  # named and counted by segment_update


def test_a_segment_used_by_a_running_campaign_is_not_deleted_in_the_admin(staff, merchant, setup):
    template, _, segment = setup
    _campaign(merchant, template, segment, "running")
    assert staff.post(f"/admin/contacts/segment/{segment.pk}/delete/", {"post": "yes"}).status_code == 403
    staff.post(
        "/admin/contacts/segment/",
        {"action": "delete_selected", "_selected_action": [str(segment.pk)], "post": "yes"},
    )
    assert Segment.objects.filter(pk=segment.pk).exists()


# --- contacts: edits through contact_update -------------------------------------------------------------------------


def _change_contact(staff: Client, contact: Contact, **fields):
    data = {
        "display_name": contact.display_name,
        "attributes": json.dumps(contact.attributes),
        "contact_tags-TOTAL_FORMS": "0",
        "contact_tags-INITIAL_FORMS": "0",
        "contact_tags-MIN_NUM_FORMS": "0",
        "contact_tags-MAX_NUM_FORMS": "1000",
        **fields,
    }
    return staff.post(f"/admin/contacts/contact/{contact.pk}/change/", data)


def test_a_contact_edited_in_the_admin_goes_through_contact_update(staff, account):
    john = ContactFactory.create(
        account=account, merchant=account.merchant, display_name="John", attributes={"tier": "gold", "city": "Oslo"}
    )
    response = _change_contact(staff, john, display_name="Johnny", attributes=json.dumps({"tier": "silver"}))
    assert response.status_code == 302
    john.refresh_from_db()
    assert (john.display_name, john.display_name_overridden) == ("Johnny", True)  # no longer follows X's name
    assert john.attributes == {"tier": "silver"}  # the key removed in the form is deleted


def test_a_contact_edit_the_service_refuses_is_a_form_error(staff, account):
    john = ContactFactory.create(account=account, merchant=account.merchant, attributes={"tier": "gold"})
    response = _change_contact(staff, john, attributes=json.dumps({"9 bad key": "x"}))
    assert response.status_code == 200 and "attributes" in response.context["adminform"].form.errors
    page = _change_contact(staff, john, display_name="   ")
    assert page.status_code == 200 and page.context["adminform"].form.errors
    john.refresh_from_db()
    assert john.attributes == {"tier": "gold"} and not john.display_name_overridden


def test_a_contact_edit_with_an_invalid_inline_row_writes_nothing(staff, account):
    # given a valid change of the contact itself, beside a tag row naming another merchant's tag
    john = ContactFactory.create(
        account=account, merchant=account.merchant, display_name="John", attributes={"tier": "gold"}
    )
    foreign = Tag.objects.create(merchant=MerchantFactory.create(), name="rival-secret")
    # when
    response = _change_contact(
        staff,
        john,
        display_name="Johnny",
        attributes=json.dumps({"tier": "silver"}),
        **{
            "contact_tags-TOTAL_FORMS": "1",
            "contact_tags-0-id": "",
            "contact_tags-0-contact": str(john.pk),
            "contact_tags-0-tag": str(foreign.pk),
        },
    )
    # then the form comes back with the inline's error, and the service's write was undone with it
    assert response.status_code == 200
    assert not response.context["adminform"].form.errors
    assert any(response.context["inline_admin_formsets"][0].formset.errors)
    john.refresh_from_db()
    assert (john.display_name, john.display_name_overridden) == ("John", False)
    assert john.attributes == {"tier": "gold"}
    assert not ContactTag.objects.filter(contact=john).exists()


def test_xs_fields_of_a_contact_are_read_only_in_the_admin(staff, account):
    john = ContactFactory.create(account=account, merchant=account.merchant, username="john", following=False)
    _change_contact(staff, john, username="someone_else", following="on")
    john.refresh_from_db()
    assert (john.username, john.following) == ("john", False)
