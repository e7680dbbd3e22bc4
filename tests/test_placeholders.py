"""Placeholders filled from the variables, the contact's attributes, its profile and the defaults, with the source of
each; and the audience check that counts, in one SQL query, the recipients nothing fills a placeholder for."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Template
from campaigns.placeholders import fill, placeholders_check, placeholders_missing
from campaigns.templating import placeholders, render
from contacts.models import Contact
from mktx.api.errors import InvalidInput
from tests.campaign_helpers import connect, customer
from tests.factories import AccountFactory, ContactFactory, MerchantFactory
from tests.test_campaigns import BASE, create, segment, template


def tpl(content: str, **extra: Any) -> Template:
    return Template(content=content, options=extra.get("options", []), card=extra.get("card", {}))


def person(display_name: str = "Jane Doe", username: str = "jane", **attributes: Any) -> Contact:
    return Contact(display_name=display_name, username=username, twitter_user_id="42", attributes=attributes)


# --- one recipient ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "attributes", "display_name", "expected", "source"),
    [
        ({"name": "Var"}, {"name": "Attr"}, "Jane Doe", "Var", "variables"),
        ({}, {"name": "Attr"}, "Jane Doe", "Attr", "attribute"),
        ({}, {}, "Jane Doe", "Jane Doe", "profile"),
        ({}, {}, "", "jane", "profile"),  # the username when the display name is empty
        ({"name": ""}, {"name": None}, "Jane Doe", "Jane Doe", "profile"),  # "" and null are no value
    ],
)
def test_variables_beat_the_attribute_which_beats_the_profile(variables, attributes, display_name, expected, source):
    rendered = render(tpl("Hi {{name|friend}}"), variables=variables, contact=person(display_name, **attributes))
    assert rendered.text == f"Hi {expected}"
    assert rendered.sources == {"name": source}


def test_the_default_comes_last_and_without_a_contact_only_variables_and_defaults_fill():
    # a contact with no name at all: neither display name nor username
    nobody = person("", "")
    assert render(tpl("Hi {{name|friend}}"), contact=nobody).sources == {"name": "default"}
    alone = render(tpl("Hi {{name|friend}}, {{shop}}"), variables={"shop": "GoodGo"})
    assert (alone.text, alone.sources) == ("Hi friend, GoodGo", {"name": "default", "shop": "variables"})
    with pytest.raises(InvalidInput) as refused:
        render(tpl("Hi {{name}}"), variables={})
    assert refused.value.details["field"] == "variables.name"


def test_first_name_is_the_first_word_of_the_display_name_and_username_the_handle():
    jane = person("  Jane   van Doe ", "jane_d")
    rendered = render(tpl("{{firstName}} / {{displayName}} / @{{username}}"), contact=jane)
    assert rendered.text == "Jane / Jane   van Doe / @jane_d"
    assert rendered.sources == {"firstName": "profile", "displayName": "profile", "username": "profile"}
    assert fill("firstName", variables={}, contact=person("   ", "jane_d")) is None  # firstName has no fallback


def test_an_attribute_of_the_same_key_fills_any_custom_placeholder():
    rendered = render(tpl("Hey {{nickname}}, {{points}} points"), contact=person(nickname="JJ", points=12.0))
    assert rendered.text == "Hey JJ, 12 points"
    assert rendered.sources == {"nickname": "attribute", "points": "attribute"}


def test_explicit_contact_forms_keep_working_and_variables_still_beat_them():
    jane = person("Jane Doe", "jane", tier="gold")
    content = "{{contact.displayName}} @{{contact.username}} {{contact.attributes.tier}} {{contact.attributes.city|-}}"
    rendered = render(tpl(content), contact=jane)
    assert rendered.text == "Jane Doe @jane gold -"
    assert rendered.sources == {
        "contact.displayName": "contact",
        "contact.username": "contact",
        "contact.attributes.tier": "contact",
        "contact.attributes.city": "default",
    }
    overridden = render(tpl("{{contact.displayName}}"), variables={"contact.displayName": "Johnny"}, contact=jane)
    assert (overridden.text, overridden.sources) == ("Johnny", {"contact.displayName": "variables"})
    # the explicit form names the attribute only: no profile fallback for contact.attributes.name
    with pytest.raises(InvalidInput) as refused:
        render(tpl("{{contact.attributes.name}}"), contact=jane)
    assert refused.value.details["field"] == "variables.contact.attributes.name"


def test_a_placeholder_nothing_fills_for_the_contact_is_refused():
    with pytest.raises(InvalidInput) as refused:
        render(tpl("Hey {{nickname}}"), contact=person(nickname=""))
    assert refused.value.details["field"] == "variables.nickname"


def test_options_and_card_buttons_are_filled_and_sourced_too():
    template = tpl(
        "Pick one",
        options=[{"label": "Size {{size}}", "description": "for {{firstName}}"}],
        card={"buttons": [{"label": "Shop {{shop|now}}", "url": "https://goodgo.com"}]},
    )
    rendered = render(template, variables={"size": "M"}, contact=person("Jane Doe"))
    assert rendered.options == [{"label": "Size M", "description": "for Jane"}]
    assert rendered.buttons == [{"label": "Shop now", "url": "https://goodgo.com"}]
    assert rendered.sources == {"size": "variables", "firstName": "profile", "shop": "default"}


# --- a whole audience, in SQL ----------------------------------------------------------------------------------------

AUDIENCE_TEMPLATE = "Hi {{name}} ({{firstName}}), {{nickname}} {{contact.attributes.tier}} {{shop}} {{code|X}}"


@pytest.fixture
def audience(db) -> Any:
    """Six contacts of one merchant (and a stranger of another merchant who has nothing)."""
    account = AccountFactory.create(merchant=MerchantFactory.create())
    rows = [
        ("Jane Doe", "jane", {"nickname": "JJ", "tier": "gold"}),
        ("", "bob", {"nickname": ""}),
        ("   ", "", {"nickname": None, "tier": ""}),
        ("", "", {"name": "Ann", "firstName": "Ann"}),
        ("Carl", "carl", {"tier": 0}),  # 0 is a value
        ("Dee Dee", "dee", {"nickname": "D", "tier": None}),
    ]
    for display_name, username, attributes in rows:
        ContactFactory.create(account=account, display_name=display_name, username=username, attributes=attributes)
    ContactFactory.create(display_name="", username="", attributes={})
    return Contact.objects.filter(merchant=account.merchant)


def test_placeholders_missing_counts_the_recipients_without_a_source_in_one_query(audience, django_assert_num_queries):
    used = placeholders(AUDIENCE_TEMPLATE)
    with django_assert_num_queries(1):
        missing = placeholders_missing(audience, used=used, variables={"shop": "GoodGo"})
    # shop comes from the variables and code has a default: neither is counted
    assert missing == {"name": 1, "firstName": 2, "nickname": 4, "contact.attributes.tier": 4}


def test_the_sql_count_agrees_with_rendering_each_contact(audience):
    used = placeholders(AUDIENCE_TEMPLATE)
    missing = placeholders_missing(audience, used=used, variables={})
    for name, count in missing.items():
        assert count == sum(fill(name, variables={}, contact=c) is None for c in audience), name


def test_nothing_left_open_asks_no_query(audience, django_assert_num_queries):
    used = placeholders("Hi {{name|friend}}, {{shop}}")
    with django_assert_num_queries(0):
        assert placeholders_missing(audience, used=used, variables={"shop": "GoodGo"}) == {}


def test_placeholders_check_names_the_first_placeholder_some_recipients_lack_and_how_many(audience):
    # the variables fill `shop` and every contact has a twitterUserId: `nickname` is the first that some lack
    used = placeholders("{{shop}} {{contact.twitterUserId}} {{nickname}} {{contact.attributes.tier}}")
    with pytest.raises(InvalidInput) as refused:
        placeholders_check(audience, used=used, variables={"shop": "GoodGo"})
    assert refused.value.details["field"] == "variables.nickname"
    assert refused.value.details["missing"] == 4
    assert "4 recipients" in refused.value.message


def test_placeholders_check_passes_when_every_recipient_has_a_value(audience):
    used = placeholders("{{shop}} {{contact.username}} {{nickname|friend}}")
    with pytest.raises(InvalidInput) as refused:
        placeholders_check(audience, used=used, variables={"shop": "GoodGo"})
    assert (refused.value.details["field"], refused.value.details["missing"]) == ("variables.contact.username", 2)
    placeholders_check(audience.exclude(username=""), used=used, variables={"shop": "GoodGo"})


# --- the campaign test send uses the same resolution ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_test_send_fills_name_from_the_profile_and_a_placeholder_from_the_attribute(api, sandbox, settings):
    settings.MKTX_X_DM_DAILY_LIMIT = settings.MKTX_CAMPAIGN_DAILY_LIMIT = 10_000_000
    sandbox.limits(dm15m=100_000, dm24h=100_000)
    shop = connect(api, sandbox)
    jane = customer(sandbox, shop, "jane_doe", "fans", nickname="JJ")
    tpl_id = template(
        api,
        content="Hi {{firstName}} ({{name}}), {{nickname}}: {{shop}}",
        variables=["firstName", "name", "nickname", "shop"],
    )
    data = create(api, [segment(api, "Fans", "fans")], tpl_id, variables={"shop": "GoodGo"})
    response = api.post(f"{BASE}/campaigns/{data['id']}/test", {"contactIds": [str(jane["contact"].pk)]}, format="json")
    assert response.status_code == 200, response.json()
    (dm,) = sandbox.dms(senderId=shop["id"])
    assert dm["text"] == "Hi Jane (Jane Doe), JJ: GoodGo"


def test_a_placeholder_used_bare_and_with_a_default_needs_a_value_for_the_bare_use():
    from campaigns.templating import placeholders

    assert placeholders("Hi {{nickname}}, or {{nickname|friend}}") == {"nickname": None}
    assert placeholders("Hi {{nickname|friend}}, or {{nickname}}") == {"nickname": None}
    assert placeholders("Hi {{nickname|friend}}, {{nickname|pal}}") == {"nickname": "friend"}
