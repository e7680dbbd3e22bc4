"""Templates: placeholders with defaults and contact values, the three types, previews, and the 409 when in use."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Campaign, Template
from tests.factories import AccountFactory, ContactFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
TEMPLATES = "/api/v1/mkt-x/templates"

WELCOME = {
    "name": "Welcome Message",
    "type": "text",
    "content": "Hi {{name}}, welcome to {{shop_name}}! Use code {{discount_code}} for 10% off your first order.",
    "variables": ["name", "shop_name", "discount_code"],
}


def create(api, **overrides):
    return api.post(TEMPLATES, {**WELCOME, **overrides}, format="json")


def preview(api, template_id, **body):
    return api.post(f"{TEMPLATES}/{template_id}/preview", body, format="json")


def test_create_and_preview_as_in_the_reference(api, merchant):
    created = create(api)
    assert created.status_code == 200, created.json()
    data = created.json()["data"]
    assert (data["merchantId"], data["name"], data["type"], data["variables"]) == (
        str(merchant.id), "Welcome Message", "text", ["name", "shop_name", "discount_code"],
    )  # fmt: skip
    assert {"id", "content", "createdAt"} <= set(data)
    rendered = preview(
        api, data["id"], variables={"name": "John", "shop_name": "GoodGo Shop", "discount_code": "WELCOME10"}
    )
    assert rendered.json()["data"]["rendered"] == (
        "Hi John, welcome to GoodGo Shop! Use code WELCOME10 for 10% off your first order."
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [(["name", "shop_name"], "discount_code"), (["name", "shop_name", "discount_code", "extra"], "extra")],
)
def test_variables_must_list_exactly_the_placeholders(api, variables, named):
    response = create(api, variables=variables)
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "variables"
    assert named in response.json()["details"]["reason"]
    assert not Template.objects.exists()


def test_defaults_fill_missing_values_and_a_value_without_default_is_an_error(api):
    template_id = create(api, content="Hi {{name|friend}}, use {{code}}", variables=["name", "code"]).json()["data"][
        "id"
    ]
    defaulted = preview(api, template_id, variables={"code": "X1"}).json()["data"]
    assert (defaulted["rendered"], defaulted["sources"]) == (
        "Hi friend, use X1",
        {"name": "default", "code": "variables"},
    )
    missing = preview(api, template_id, variables={"name": "Ann"})
    assert missing.status_code == 400
    assert missing.json()["details"]["field"] == "variables.code"


def test_contact_values_render_and_explicit_variables_override_them(api, merchant):
    contact = ContactFactory.create(
        account=AccountFactory.create(merchant=merchant), merchant=merchant, display_name="John Doe",
        username="customer_john", attributes={"membershipTier": "gold", "purchaseCount": 5.0},
    )  # fmt: skip
    content = "{{contact.displayName}} (@{{contact.username}}) is {{contact.attributes.membershipTier}} after {{contact.attributes.purchaseCount}} orders; {{contact.attributes.city|somewhere}}"  # noqa: E501
    template_id = create(api, content=content, variables=[]).json()["data"]["id"]

    rendered = preview(api, template_id, contactId=str(contact.id)).json()["data"]["rendered"]
    assert rendered == "John Doe (@customer_john) is gold after 5 orders; somewhere"
    overridden = preview(api, template_id, contactId=str(contact.id), variables={"contact.displayName": "Johnny"})
    assert overridden.json()["data"]["rendered"].startswith("Johnny (@customer_john)")
    without_contact = preview(api, template_id)
    assert without_contact.status_code == 400
    assert without_contact.json()["details"]["field"] == "variables.contact.displayName"


def test_a_preview_for_a_contact_shows_which_source_filled_each_placeholder(api, merchant):
    contact = ContactFactory.create(
        account=AccountFactory.create(merchant=merchant), display_name="Jane", attributes={"discount_code": "JANE5"}
    )
    template_id = create(api).json()["data"]["id"]

    response = preview(api, template_id, contactId=str(contact.id), variables={"shop_name": "GoodGo Shop"})
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["rendered"] == "Hi Jane, welcome to GoodGo Shop! Use code JANE5 for 10% off your first order."
    assert data["sources"] == {"name": "profile", "shop_name": "variables", "discount_code": "attribute"}
    without_contact = preview(api, template_id, variables={"shop_name": "GoodGo Shop", "discount_code": "W10"})
    assert without_contact.status_code == 400  # `name` has no value and no default without a contact
    assert without_contact.json()["details"]["field"] == "variables.name"


def test_unknown_contact_fields_and_foreign_contacts_are_refused(api):
    assert create(api, content="{{contact.email}}", variables=[]).status_code == 400
    template_id = create(api, content="{{contact.username}}", variables=[]).json()["data"]["id"]
    foreign = ContactFactory.create()
    response = preview(api, template_id, contactId=str(foreign.id))
    assert response.status_code == 400 and response.json()["details"]["field"] == "contactId"


def test_content_over_xs_limit_once_rendered_is_refused(api):
    template_id = create(api, content="x" * 9_990 + "{{name}}", variables=["name"]).json()["data"]["id"]
    assert preview(api, template_id, variables={"name": "short"}).status_code == 200
    too_long = preview(api, template_id, variables={"name": "a much longer name"})
    assert too_long.status_code == 400 and too_long.json()["details"]["field"] == "content"
    assert create(api, content="x" * 10_001, variables=[]).status_code == 400


def test_quick_reply_templates_carry_up_to_twenty_options(api):
    options = [{"label": "Size {{size}}", "description": "fits well", "metadata": "size"}]
    created = create(api, type="quick_reply", content="Which size?", variables=["size"], options=options)
    assert created.status_code == 200, created.json()
    rendered = preview(api, created.json()["data"]["id"], variables={"size": "M"}).json()["data"]
    assert rendered["options"] == [{"label": "Size M", "description": "fits well", "metadata": "size"}]
    for bad, field in (
        ([{"label": f"o{i}"} for i in range(21)], "options"),
        ([], "options"),
        ([{"label": "x" * 37}], "options[0].label"),
        ([{"description": "no label"}], "options[0].label"),
    ):
        response = create(api, type="quick_reply", content="?", variables=[], options=bad)
        assert response.status_code == 400 and response.json()["details"]["field"] == field


def test_card_templates_have_an_image_and_up_to_three_links(api):
    card: dict[str, Any] = {
        "imageUrl": "https://cdn.example.com/sale.png",
        "buttons": [{"label": "Shop now", "url": "https://goodgo.com/sale"}],
    }
    created = create(api, type="card", content="Sale!", variables=[], card=card)
    assert created.status_code == 200, created.json()
    rendered = preview(api, created.json()["data"]["id"]).json()["data"]
    assert rendered["rendered"] == "Sale!\n\nShop now: https://goodgo.com/sale"
    assert rendered["imageUrl"] == "https://cdn.example.com/sale.png"
    four = {**card, "buttons": card["buttons"] * 4}
    assert create(api, type="card", content="x", variables=[], card=four).json()["details"]["field"] == "card.buttons"
    plain = {**card, "imageUrl": "http://insecure"}
    assert create(api, type="card", content="x", variables=[], card=plain).json()["details"]["field"] == "card.imageUrl"
    assert create(api, content="x", variables=[], card=card).json()["details"]["field"] == "card"


def test_list_filters_update_and_scope(api):
    create(api, name="Welcome")
    create(api, name="Order shipped", type="quick_reply", content="Shipped?", variables=[], options=[{"label": "Yes"}])
    names = lambda **q: [t["name"] for t in api.get(TEMPLATES, q).json()["data"]]  # noqa: E731
    assert names(type="quick_reply") == ["Order shipped"]
    assert names(search="WELC") == ["Welcome"]
    assert api.get(TEMPLATES, {"type": "poster"}).status_code == 400
    template = Template.objects.get(name="Welcome")
    updated = api.put(
        f"{TEMPLATES}/{template.id}",
        {"name": "Updated", "content": "Hello {{name}}!", "variables": ["name"]},
        format="json",
    )
    assert updated.json()["data"]["name"] == "Updated"
    bad = api.put(f"{TEMPLATES}/{template.id}", {"content": "Hello {{first}}"}, format="json")
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "variables"
    foreign = Template.objects.create(merchant=MerchantFactory.create(), name="x", content="x")
    assert api.get(f"{TEMPLATES}/{foreign.id}").status_code == 404
    assert api.delete(f"{TEMPLATES}/{foreign.id}").status_code == 404


@pytest.mark.parametrize("status", ["scheduled", "running", "paused"])
def test_deleting_a_template_an_active_campaign_uses_is_409(api, merchant, status):
    template = Template.objects.get(pk=create(api).json()["data"]["id"])
    campaign = Campaign.objects.create(merchant=merchant, name="Jan", template=template, status=status)
    response = api.delete(f"{TEMPLATES}/{template.id}")
    assert response.status_code == 409
    assert response.json()["code"] == "RESOURCE_IN_USE"
    assert response.json()["details"]["campaignIds"] == [str(campaign.id)]
    assert Template.objects.filter(pk=template.pk).exists()


def test_a_template_of_draft_or_finished_campaigns_can_be_deleted(api, merchant):
    template = Template.objects.get(pk=create(api).json()["data"]["id"])
    done = Campaign.objects.create(merchant=merchant, name="Old", template=template, status="completed")
    assert api.delete(f"{TEMPLATES}/{template.id}").status_code == 200
    done.refresh_from_db()
    assert done.template is None


def test_agents_preview_but_do_not_write_templates(client_for, merchant, api):
    template_id = create(api).json()["data"]["id"]
    agent = client_for(UserFactory.create(merchant=merchant, role="agent"))
    assert create(agent).status_code == 403
    assert agent.delete(f"{TEMPLATES}/{template_id}").status_code == 403
    body = {"variables": {"name": "A", "shop_name": "B", "discount_code": "C"}}
    assert agent.post(f"{TEMPLATES}/{template_id}/preview", body, format="json").status_code == 200
