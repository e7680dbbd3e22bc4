"""The contact admin's tags: only the contact's merchant's are offered, and changes go through the tag services
(so `Contact.tag_names`, what segments filter on, stays in step). Issue 11, point 12."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from contacts.models import Contact, ContactTag, Tag
from contacts.services.contacts import contact_tags_add
from tests.factories import AccountFactory, ContactFactory, MerchantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def john(merchant) -> Contact:
    account = AccountFactory.create(merchant=merchant)
    return ContactFactory.create(account=account, merchant=merchant)


@pytest.fixture
def tags(merchant) -> dict[str, Tag]:
    rival = MerchantFactory.create()
    return {
        "vip": Tag.objects.create(merchant=merchant, name="vip"),
        "gold": Tag.objects.create(merchant=merchant, name="gold"),
        "rival": Tag.objects.create(merchant=rival, name="rival-secret"),
    }


def _post(staff: Client, contact: Contact, rows: list[dict[str, str]], initial: int = 0):
    data = {
        "display_name": contact.display_name,
        "attributes": json.dumps(contact.attributes),
        "contact_tags-TOTAL_FORMS": str(len(rows)),
        "contact_tags-INITIAL_FORMS": str(initial),
        "contact_tags-MIN_NUM_FORMS": "0",
        "contact_tags-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for n, row in enumerate(rows):
        data.update(
            {f"contact_tags-{n}-contact": str(contact.pk), **{f"contact_tags-{n}-{k}": v for k, v in row.items()}}
        )
    return staff.post(f"/admin/contacts/contact/{contact.pk}/change/", data)


def test_the_change_page_offers_only_the_contacts_merchants_tags(staff, john, tags):
    page = staff.get(f"/admin/contacts/contact/{john.pk}/change/").content.decode()
    assert f'value="{tags["vip"].pk}"' in page
    assert "rival-secret" not in page
    assert "/admin/autocomplete/" not in page


def test_a_tag_added_in_the_admin_goes_through_the_service(staff, john, tags):
    response = _post(staff, john, [{"id": "", "tag": str(tags["vip"].pk)}])
    assert response.status_code == 302, response.content.decode()[:2000]
    john.refresh_from_db()
    assert john.tag_names == ["vip"]


def test_another_merchants_tag_is_refused_and_nothing_changes(staff, john, tags):
    response = _post(staff, john, [{"id": "", "tag": str(tags["rival"].pk)}])
    assert response.status_code == 200  # the form again, with the error
    assert not ContactTag.objects.filter(contact=john).exists()
    john.refresh_from_db()
    assert john.tag_names == []


def test_tags_removed_or_replaced_in_the_admin_keep_tag_names_in_step(staff, john, tags):
    contact_tags_add(contact=john, tags=["vip", "gold"])
    rows = {row.tag.name: row for row in ContactTag.objects.filter(contact=john).select_related("tag")}
    response = _post(
        staff,
        john,
        [
            {"id": str(rows["gold"].pk), "tag": str(tags["gold"].pk), "DELETE": "on"},
            {"id": str(rows["vip"].pk), "tag": str(tags["vip"].pk)},
        ],
        initial=2,
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    john.refresh_from_db()
    assert john.tag_names == ["vip"]
