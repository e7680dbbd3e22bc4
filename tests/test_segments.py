"""Segments: every operator on the field types it allows, nested groups, validation paths, counts and previews."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Template
from contacts.models import Segment
from contacts.services.contacts import XProfile, contact_attributes_merge, contact_tags_add
from contacts.services.inbound import dm_record
from contacts.services.segments import segment_contacts
from tests.factories import AccountFactory, ContactFactory, MerchantFactory

pytestmark = pytest.mark.django_db
SEGMENTS = "/api/v1/mkt-x/segments"


@pytest.fixture
def people(merchant):
    now = timezone.now()
    a, b = AccountFactory.create(merchant=merchant), AccountFactory.create(merchant=merchant)

    def make(account, username, tags=(), **kwargs):
        contact = ContactFactory.create(
            account=account, merchant=merchant, username=username, display_name=username.title(), **kwargs
        )
        if tags:
            contact_tags_add(contact=contact, tags=list(tags))
        return contact

    make(a, "alice", ("vip", "customer"), attributes={"purchaseCount": 8, "tier": "gold", "lastPurchaseDate": "2026-01-15", "newsletter": True},  # noqa: E501
         following=True, conversation_count=3, messages_received=10, last_interaction_at=now - timedelta(days=1),
         first_interaction_at=now - timedelta(days=100))  # fmt: skip
    make(a, "bob", ("customer",), attributes={"purchaseCount": 2, "tier": "silver", "lastPurchaseDate": "2025-06-01"},
         opted_out=True, source="new_follower", last_interaction_at=now - timedelta(days=40),
         first_interaction_at=now - timedelta(days=40))  # fmt: skip
    make(b, "carol", (), attributes={"purchaseCount": "many", "tier": "Gold Plus"}, last_interaction_at=None,
         first_interaction_at=None)  # fmt: skip
    make(a, "dave_x", ("lead",), source="api", conversation_count=1, messages_received=2,
         last_interaction_at=now - timedelta(days=5), first_interaction_at=now - timedelta(days=5))  # fmt: skip
    foreign = ContactFactory.create(username="mallory", attributes={"purchaseCount": 99, "tier": "gold"})
    contact_tags_add(contact=foreign, tags=["vip", "customer"])
    return {"a": a, "b": b}


def matches(merchant, *conditions) -> set[str]:
    return set(
        segment_contacts(merchant_id=merchant.id, conditions=list(conditions)).values_list("username", flat=True)
    )


def c(field, operator, value=None):
    condition = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    return condition


CASES = [
    # tags
    (c("tags", "contains", "VIP"), {"alice"}),
    (c("tags", "notContains", "customer"), {"carol", "dave_x"}),
    (c("tags", "in", ["vip", "lead"]), {"alice", "dave_x"}),
    (c("tags", "notIn", ["vip", "lead"]), {"bob", "carol"}),
    (c("tags", "exists"), {"alice", "bob", "dave_x"}),
    (c("tags", "notExists"), {"carol"}),
    # strings
    (c("username", "equals", "bob"), {"bob"}),
    (c("username", "notEquals", "bob"), {"alice", "carol", "dave_x"}),
    (c("username", "contains", "A"), {"alice", "carol", "dave_x"}),
    (c("username", "notContains", "a"), {"bob"}),
    (c("username", "startsWith", "da"), {"dave_x"}),
    (c("username", "endsWith", "_x"), {"dave_x"}),
    (c("username", "contains", "%"), set()),
    (c("displayName", "in", ["Alice", "Bob"]), {"alice", "bob"}),
    (c("displayName", "notIn", ["Alice", "Bob"]), {"carol", "dave_x"}),
    (c("displayName", "exists"), {"alice", "bob", "carol", "dave_x"}),
    # choices, booleans
    (c("source", "equals", "new_follower"), {"bob"}),
    (c("source", "in", ["api", "new_follower"]), {"bob", "dave_x"}),
    (c("source", "notEquals", "inbound_message"), {"bob", "dave_x"}),
    (c("following", "equals", True), {"alice"}),
    (c("optedOut", "notEquals", True), {"alice", "carol", "dave_x"}),
    # integers
    (c("conversationCount", "greaterThan", 0), {"alice", "dave_x"}),
    (c("conversationCount", "greaterThanOrEqual", 3), {"alice"}),
    (c("conversationCount", "lessThan", 1), {"bob", "carol"}),
    (c("messagesReceived", "lessThanOrEqual", 2), {"bob", "carol", "dave_x"}),
    (c("messagesReceived", "between", [1, 10]), {"alice", "dave_x"}),
    (c("messagesReceived", "in", [2, 10]), {"alice", "dave_x"}),
    (c("messagesReceived", "notIn", [2, 10]), {"bob", "carol"}),
    (c("conversationCount", "equals", 1), {"dave_x"}),
    # date-times
    (c("lastInteractionAt", "withinLastDays", 7), {"alice", "dave_x"}),
    (c("lastInteractionAt", "notWithinLastDays", 7), {"bob", "carol"}),
    (c("firstInteractionAt", "before", (timezone.now() - timedelta(days=50)).isoformat()), {"alice"}),
    (c("lastInteractionAt", "after", "2000-01-01"), {"alice", "bob", "dave_x"}),
    (c("lastInteractionAt", "notExists"), {"carol"}),
    (
        c(
            "lastInteractionAt",
            "between",
            [(timezone.now() - timedelta(days=10)).isoformat(), timezone.now().isoformat()],
        ),
        {"alice", "dave_x"},
    ),
    # attributes: numbers only where the attribute is a number
    (c("attributes.purchaseCount", "greaterThan", 5), {"alice"}),
    (c("attributes.purchaseCount", "lessThanOrEqual", 8), {"alice", "bob"}),
    (c("attributes.purchaseCount", "between", [1, 3]), {"bob"}),
    (c("attributes.purchaseCount", "equals", 8), {"alice"}),
    (c("attributes.purchaseCount", "notEquals", 8), {"bob", "carol", "dave_x"}),
    (c("attributes.purchaseCount", "in", [2, 8]), {"alice", "bob"}),
    (c("attributes.purchaseCount", "notIn", [2, 8]), {"carol", "dave_x"}),
    (c("attributes.purchaseCount", "exists"), {"alice", "bob", "carol"}),
    (c("attributes.purchaseCount", "notExists"), {"dave_x"}),
    # attributes: strings, booleans, dates
    (c("attributes.tier", "equals", "gold"), {"alice"}),
    (c("attributes.tier", "notEquals", "gold"), {"bob", "carol", "dave_x"}),
    (c("attributes.tier", "contains", "GOLD"), {"alice", "carol"}),
    (c("attributes.tier", "startsWith", "sil"), {"bob"}),
    (c("attributes.tier", "in", ["gold", "silver"]), {"alice", "bob"}),
    (c("attributes.newsletter", "equals", True), {"alice"}),
    (c("attributes.lastPurchaseDate", "after", "2025-12-31"), {"alice"}),
    (c("attributes.lastPurchaseDate", "before", "2025-12-31"), {"bob"}),
    (c("attributes.lastPurchaseDate", "between", ["2025-01-01", "2025-12-31"]), {"bob"}),
    (c("attributes.lastPurchaseDate", "exists"), {"alice", "bob"}),
    (c("attributes.tier", "endsWith", "plus"), {"carol"}),
    (c("attributes.tier", "notContains", "gold"), {"bob", "dave_x"}),
    (c("attributes.tier", "notIn", ["gold", "silver"]), {"carol", "dave_x"}),
    (c("attributes.tier", "notExists"), {"dave_x"}),
    (c("attributes.newsletter", "notEquals", True), {"bob", "carol", "dave_x"}),
    (c("attributes.purchaseCount", "lessThan", 3), {"bob"}),
    (c("attributes.purchaseCount", "greaterThanOrEqual", 8), {"alice"}),
    (c("displayName", "startsWith", "car"), {"carol"}),
    (c("displayName", "endsWith", "OB"), {"bob"}),
    (c("username", "notExists"), set()),
    (c("firstInteractionAt", "exists"), {"alice", "bob", "dave_x"}),
    (c("following", "notEquals", True), {"bob", "carol", "dave_x"}),
    (c("source", "notIn", ["inbound_message"]), {"bob", "dave_x"}),
    (c("conversationCount", "notEquals", 0), {"alice", "dave_x"}),
]


def _case_id(value: object) -> str:
    """The same on every run (a set's order is not): xdist's workers must collect the same ids."""
    return str(sorted(value) if isinstance(value, set) else value)[:60]


@pytest.mark.parametrize(("condition", "expected"), CASES, ids=_case_id)
def test_each_operator_on_the_fields_it_allows(merchant, people, condition, expected):
    assert matches(merchant, condition) == expected


def test_a_top_level_list_means_all_and_groups_nest(merchant, people):
    assert matches(merchant, c("tags", "contains", "customer"), c("attributes.purchaseCount", "greaterThan", 5)) == {
        "alice"
    }
    any_group = {"match": "any", "conditions": [c("tags", "contains", "lead"), c("optedOut", "equals", True)]}
    assert matches(merchant, any_group) == {"bob", "dave_x"}
    nested = {
        "match": "all",
        "conditions": [
            c("tags", "exists"),
            {
                "match": "any",
                "conditions": [
                    c("username", "startsWith", "a"),
                    {"match": "all", "conditions": [c("source", "equals", "api"), c("conversationCount", "equals", 1)]},
                ],
            },
        ],
    }
    assert matches(merchant, nested) == {"alice", "dave_x"}
    assert matches(merchant) == {"alice", "bob", "carol", "dave_x"}


def test_the_reference_example_segment(merchant, people):
    reference = [
        c("tags", "contains", "vip"),
        c("attributes.purchaseCount", "greaterThan", 5),
        c("lastInteractionAt", "after", "2026-01-01T00:00:00Z"),
    ]
    assert matches(merchant, *reference) == {"alice"}


def test_account_id(merchant, people):
    assert matches(merchant, c("accountId", "equals", str(people["b"].id))) == {"carol"}
    assert matches(merchant, c("accountId", "notIn", [str(people["b"].id)])) == {"alice", "bob", "dave_x"}


@pytest.mark.parametrize(
    ("conditions", "path"),
    [
        ([{"field": "shoeSize", "operator": "equals", "value": 1}], "conditions[0].field"),
        ([{"field": "tags", "operator": "greaterThan", "value": 1}], "conditions[0].operator"),
        ([{"field": "tags", "operator": "sortOf", "value": "x"}], "conditions[0].operator"),
        (
            [c("tags", "contains", "vip"), {"field": "username", "operator": "startsWith", "value": 3}],
            "conditions[1].value",
        ),
        ([c("conversationCount", "greaterThan", "five")], "conditions[0].value"),
        ([c("conversationCount", "between", [1])], "conditions[0].value"),
        ([c("lastInteractionAt", "after", "last tuesday")], "conditions[0].value"),
        ([c("lastInteractionAt", "withinLastDays", 0)], "conditions[0].value"),
        ([c("following", "equals", "yes")], "conditions[0].value"),
        ([c("source", "equals", "carrier pigeon")], "conditions[0].value"),
        ([c("accountId", "equals", "not-a-uuid")], "conditions[0].value"),
        ([{"field": "username", "operator": "equals"}], "conditions[0].value"),
        ([{"field": "attributes.bad key", "operator": "equals", "value": 1}], "conditions[0].field"),
        ([{"field": "attributes.x__y; DROP TABLE", "operator": "equals", "value": 1}], "conditions[0].field"),
        ([{"field": "username", "operator": "equals", "value": "x", "extra": 1}], "conditions[0].extra"),
        ([{"match": "some", "conditions": [c("tags", "exists")]}], "conditions[0].match"),
        ([{"match": "any", "conditions": []}], "conditions[0].conditions"),
        (
            [
                {
                    "match": "any",
                    "conditions": [
                        {
                            "match": "any",
                            "conditions": [
                                {
                                    "match": "any",
                                    "conditions": [
                                        {
                                            "match": "any",
                                            "conditions": [{"match": "any", "conditions": [c("tags", "exists")]}],
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
            "conditions[0].conditions[0].conditions[0].conditions[0].conditions[0]",
        ),
        ("vip", "conditions"),
        ([3], "conditions[0]"),
    ],
)
def test_invalid_conditions_name_their_path(api, conditions, path):
    response = api.post(SEGMENTS, {"name": "S", "conditions": conditions}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["details"]["field"] == path
    assert not Segment.objects.exists()


def test_contact_count_is_right_on_create_update_and_read(api, merchant, people):
    created = api.post(SEGMENTS, {"name": "VIP", "conditions": [c("tags", "contains", "vip")]}, format="json")
    assert created.status_code == 200, created.json()
    data = created.json()["data"]
    assert (data["merchantId"], data["name"], data["contactCount"]) == (str(merchant.id), "VIP", 1)
    assert data["contactCountAt"]
    updated = api.put(f"{SEGMENTS}/{data['id']}", {"conditions": [c("tags", "contains", "customer")]}, format="json")
    assert updated.json()["data"]["contactCount"] == 2
    # a new matching contact shows in the count once the cached count is older than its freshness
    bob = ContactFactory.create(account=people["a"], merchant=merchant, username="new")
    contact_tags_add(contact=bob, tags=["customer"])
    Segment.objects.filter(pk=data["id"]).update(counted_at=timezone.now() - timedelta(minutes=5))
    assert api.get(f"{SEGMENTS}/{data['id']}").json()["data"]["contactCount"] == 3


def test_preview_totals_and_limits(api, merchant, people):
    segment_id = api.post(SEGMENTS, {"name": "All", "conditions": []}, format="json").json()["data"]["id"]
    body = api.post(f"{SEGMENTS}/{segment_id}/preview").json()["data"]
    assert body["totalMatches"] == 4
    assert [p["username"] for p in body["preview"]] == ["alice", "dave_x", "bob", "carol"]
    assert set(body["preview"][0]) >= {"id", "username", "displayName", "tags", "attributes"}
    assert len(api.post(f"{SEGMENTS}/{segment_id}/preview?limit=2").json()["data"]["preview"]) == 2
    for limit in ("0", "51", "x"):
        assert api.post(f"{SEGMENTS}/{segment_id}/preview?limit={limit}").status_code == 400


@pytest.mark.parametrize("status", ["scheduled", "running", "paused"])
def test_deleting_a_segment_an_active_campaign_uses_is_409(api, merchant, people, status):
    segment_id = api.post(SEGMENTS, {"name": "VIP", "conditions": []}, format="json").json()["data"]["id"]
    campaign = Campaign.objects.create(
        merchant=merchant,
        name="C",
        template=Template.objects.create(merchant=merchant, name="t", content="hi"),
        status=status,
    )
    campaign.segments.add(segment_id)
    response = api.delete(f"{SEGMENTS}/{segment_id}")
    assert response.status_code == 409
    assert response.json()["code"] == "RESOURCE_IN_USE"
    assert response.json()["details"]["campaignIds"] == [str(campaign.id)]
    campaign.status = "completed"
    campaign.save()
    assert api.delete(f"{SEGMENTS}/{segment_id}").status_code == 200


def test_another_merchants_segment_is_404_and_its_contacts_never_count(api, merchant, people):
    foreign = Segment.objects.create(merchant=MerchantFactory.create(), name="x", conditions=[])
    assert api.get(f"{SEGMENTS}/{foreign.id}").status_code == 404
    assert api.post(f"{SEGMENTS}/{foreign.id}/preview").status_code == 404
    mine = api.post(SEGMENTS, {"name": "gold", "conditions": [c("attributes.tier", "equals", "gold")]}, format="json")
    assert mine.json()["data"]["contactCount"] == 1  # mallory (another merchant's gold vip) is not counted


def test_counts_of_contacts_made_through_the_real_inbound_path(api, merchant):
    account = AccountFactory.create(merchant=merchant, twitter_user_id="4337869213")
    for i, (name, tier) in enumerate([("ann", "gold"), ("ben", "gold"), ("cat", "silver")]):
        message = dm_record(
            account=account, x_event_id=str(1000 + i), sender_id=str(500 + i), recipient_id=account.twitter_user_id,
            text="hi", sent_at=timezone.now(), profiles={str(500 + i): XProfile(id=str(500 + i), username=name, name=name.title())},  # noqa: E501
        )  # fmt: skip
        assert message is not None
        contact = message.conversation.contact
        contact_attributes_merge(contact=contact, changes={"tier": tier, "orders": i})
        if tier == "gold":
            contact_tags_add(contact=contact, tags=["vip"])
    conditions = [
        c("tags", "contains", "vip"),
        c("conversationCount", "equals", 1),
        c("messagesReceived", "greaterThanOrEqual", 1),
        c("attributes.orders", "greaterThan", 0),
    ]
    created = api.post(SEGMENTS, {"name": "gold talkers", "conditions": conditions}, format="json").json()["data"]
    assert created["contactCount"] == 1
    preview = api.post(f"{SEGMENTS}/{created['id']}/preview").json()["data"]["preview"]
    assert [p["username"] for p in preview] == ["ben"]


def test_agents_read_and_preview_segments_but_do_not_write(client_for, merchant, api):
    from tests.factories import UserFactory

    segment_id = api.post(SEGMENTS, {"name": "x", "conditions": []}, format="json").json()["data"]["id"]
    agent = client_for(UserFactory.create(merchant=merchant, role="agent"))
    assert agent.post(SEGMENTS, {"name": "y", "conditions": []}, format="json").status_code == 403
    assert agent.post(f"{SEGMENTS}/{segment_id}/preview").status_code == 200
    assert agent.get(SEGMENTS).status_code == 200


def test_the_admin_shows_segments_with_live_count_and_matches_and_templates_with_a_preview(owner, merchant, people):
    from django.test import Client

    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    segment = Segment.objects.create(merchant=merchant, name="vips", conditions=[c("tags", "contains", "vip")])
    template = Template.objects.create(merchant=merchant, name="t", content="Hi {{name|friend}}", variables=["name"])
    page = staff.get(f"/admin/contacts/segment/{segment.pk}/change/").content.decode()
    assert "@alice" in page and "@bob" not in page
    assert staff.get("/admin/contacts/segment/").status_code == 200
    assert "Hi [name]" in staff.get(f"/admin/campaigns/template/{template.pk}/change/").content.decode()
    assert staff.get("/admin/campaigns/campaign/").status_code == 200
