"""The FAQ endpoints (GET/POST /ai/faq, PUT/DELETE /ai/faq/{id}): create, list with skip/take, change the fields
given, delete; another merchant's entry answers 404 and stays; agents read, owners and admins write; every field
validated; at most 500 entries a merchant; the FAQ's back-office page."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from chatbot import faq as faq_module
from chatbot.faq import faq_create
from chatbot.models import FAQ
from chatbot.nlu import INTENTS
from mktx.iam.models import Role
from tests.factories import MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

FAQS = "/api/v1/mkt-x/ai/faq"
ENTRY = {
    "question": "Do you ship to Vietnam?",
    "answer": "Yes: 3-5 days to Hanoi and Ho Chi Minh City, free over 500,000 VND.",
    "intent": "shipping_info",
}


def data(response: Any) -> Any:
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def created(api: Any, **overrides: Any) -> dict[str, Any]:
    return dict(data(api.post(FAQS, {**ENTRY, **overrides}, format="json")))


def refused_field(response: Any) -> str:
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "VALIDATION_ERROR"
    return str(response.json()["details"]["field"])


def assert_not_found(response: Any) -> None:
    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "RESOURCE_NOT_FOUND"


def foreign_entry() -> FAQ:
    return faq_create(merchant_id=MerchantFactory.create().id, question="Theirs?", answer="Theirs.", intent="pricing")


# --- create, read, list --------------------------------------------------------------------------------------------


def test_it_creates_an_entry_and_reads_it_back(api, merchant):
    entry = created(api)

    assert {k: entry[k] for k in ENTRY} == ENTRY
    assert {"id", "createdAt", "updatedAt"} <= set(entry)
    assert data(api.get(f"{FAQS}/{entry['id']}")) == entry
    assert FAQ.objects.get(pk=entry["id"]).merchant_id == merchant.id


def test_the_intent_is_optional(api):
    assert created(api, intent=None)["intent"] is None
    assert created(api, intent="")["intent"] is None
    body = {"question": "Where are you?", "answer": "12 Hang Bac, Hanoi."}
    assert data(api.post(FAQS, body, format="json"))["intent"] is None


@pytest.mark.parametrize("intent", INTENTS)
def test_it_takes_each_intent_of_the_contract(api, intent):
    assert created(api, intent=intent)["intent"] == intent


def test_it_lists_the_merchants_entries_oldest_first_with_skip_and_take(api):
    ids = [created(api, question=f"Question {n}?")["id"] for n in range(5)]
    foreign_entry()

    first = api.get(FAQS, {"take": 2}).json()
    last = api.get(FAQS, {"skip": 4, "take": 2}).json()

    assert [e["id"] for e in first["data"]] == ids[:2]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 5, "totalPages": 3}
    assert [e["id"] for e in last["data"]] == ids[4:]
    assert [e["id"] for e in data(api.get(FAQS))] == ids


def test_the_list_runs_the_same_queries_whatever_its_length(api, count_queries, monkeypatch):
    from chatbot.views import FAQViewSet

    monkeypatch.setattr(FAQViewSet, "throttle_classes", [])  # the rate limit's counter is not the list's own
    created(api)
    with count_queries() as one:
        assert len(data(api.get(FAQS))) == 1
    for n in range(5):
        created(api, question=f"Q{n}?")
    with count_queries() as six:
        assert len(data(api.get(FAQS))) == 6
    assert six["n"] == one["n"]


# --- update and delete ---------------------------------------------------------------------------------------------


def test_a_put_changes_the_fields_it_is_given_and_keeps_the_others(api):
    entry = created(api)

    changed = data(api.put(f"{FAQS}/{entry['id']}", {"answer": "Yes, in 3 days."}, format="json"))

    assert changed["answer"] == "Yes, in 3 days."
    assert (changed["question"], changed["intent"]) == (ENTRY["question"], ENTRY["intent"])
    assert FAQ.objects.get(pk=entry["id"]).answer == "Yes, in 3 days."


def test_a_put_with_a_null_intent_clears_it(api):
    entry = created(api)
    assert data(api.put(f"{FAQS}/{entry['id']}", {"intent": None}, format="json"))["intent"] is None
    assert FAQ.objects.get(pk=entry["id"]).intent == ""


def test_it_deletes_an_entry(api):
    entry = created(api)

    assert api.delete(f"{FAQS}/{entry['id']}").status_code == 200

    assert not FAQ.objects.filter(pk=entry["id"]).exists()
    assert_not_found(api.get(f"{FAQS}/{entry['id']}"))
    assert_not_found(api.delete(f"{FAQS}/{entry['id']}"))


def test_another_merchants_entry_is_404_and_stays_as_it_was(api):
    theirs = foreign_entry()
    url = f"{FAQS}/{theirs.pk}"

    assert_not_found(api.get(url))
    assert_not_found(api.put(url, {"answer": "Mine now."}, format="json"))
    assert_not_found(api.delete(url))

    theirs.refresh_from_db()
    assert theirs.answer == "Theirs."
    assert data(api.get(FAQS)) == []


@pytest.mark.parametrize("pk", ["5f0c6a1e-3d1b-4c4e-9a51-2b7d9e0f4a11", "not-a-uuid", "12"])
def test_an_unknown_id_is_404(api, pk):
    assert_not_found(api.put(f"{FAQS}/{pk}", {"answer": "x"}, format="json"))
    assert_not_found(api.delete(f"{FAQS}/{pk}"))


# --- roles ---------------------------------------------------------------------------------------------------------


def test_an_agent_reads_the_faq_but_may_not_change_it(api, client_for, agent):
    entry = created(api)
    client = client_for(agent)

    assert [e["id"] for e in data(client.get(FAQS))] == [entry["id"]]
    assert data(client.get(f"{FAQS}/{entry['id']}"))["id"] == entry["id"]
    for response in (
        client.post(FAQS, ENTRY, format="json"),
        client.put(f"{FAQS}/{entry['id']}", {"answer": "Agent's."}, format="json"),
        client.delete(f"{FAQS}/{entry['id']}"),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"
    assert FAQ.objects.count() == 1
    assert FAQ.objects.get().answer == ENTRY["answer"]


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_write_the_faq(client_for, merchant, role):
    client = client_for(UserFactory.create(merchant=merchant, role=role))
    entry = created(client)
    assert data(client.put(f"{FAQS}/{entry['id']}", {"question": "Ship?"}, format="json"))["question"] == "Ship?"
    assert client.delete(f"{FAQS}/{entry['id']}").status_code == 200


# --- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"answer": "A."}, "question"),
        ({"question": "Q?"}, "answer"),
        ({**ENTRY, "question": ""}, "question"),
        ({**ENTRY, "question": "   "}, "question"),
        ({**ENTRY, "question": "q" * 1001}, "question"),
        ({**ENTRY, "question": 42}, "question"),
        ({**ENTRY, "answer": ""}, "answer"),
        ({**ENTRY, "answer": "a" * 4001}, "answer"),
        ({**ENTRY, "answer": ["a"]}, "answer"),
        ({**ENTRY, "intent": "weather"}, "intent"),
        ({**ENTRY, "intent": 3}, "intent"),
        ({**ENTRY, "intnet": "pricing"}, "intnet"),
        ([ENTRY], "body"),
    ],
)
def test_it_refuses_an_invalid_entry_naming_the_field(api, body, field):
    assert refused_field(api.post(FAQS, body, format="json")) == field
    assert not FAQ.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"question": ""}, "question"),
        ({"answer": "a" * 4001}, "answer"),
        ({"intent": "weather"}, "intent"),
        ({"id": str(uuid.uuid4())}, "id"),
    ],
)
def test_it_refuses_an_invalid_change_naming_the_field_and_keeps_the_entry(api, body, field):
    entry = created(api)
    assert refused_field(api.put(f"{FAQS}/{entry['id']}", body, format="json")) == field
    stored = FAQ.objects.get(pk=entry["id"])
    assert (stored.question, stored.answer, stored.intent) == (ENTRY["question"], ENTRY["answer"], ENTRY["intent"])


def test_it_takes_the_longest_question_and_answer(api):
    entry = created(api, question="q" * 1000, answer="a" * 4000)
    assert (len(entry["question"]), len(entry["answer"])) == (1000, 4000)


def test_a_merchant_has_at_most_max_entries(api, merchant, monkeypatch):
    monkeypatch.setattr(faq_module, "MAX_FAQ", 3)
    for n in range(3):
        created(api, question=f"Q{n}?")
    foreign_entry()  # another merchant's do not count

    refused = api.post(FAQS, ENTRY, format="json")

    assert refused_field(refused) == "body"
    assert "at most 3" in refused.json()["details"]["reason"]
    assert FAQ.objects.filter(merchant=merchant).count() == 3
    entry_id = data(api.get(FAQS))[0]["id"]
    assert api.delete(f"{FAQS}/{entry_id}").status_code == 200
    assert created(api)["question"] == ENTRY["question"]


def test_the_contracts_limit_is_500():
    assert faq_module.MAX_FAQ == 500


# --- the back office -----------------------------------------------------------------------------------------------


def test_the_admin_lists_searches_and_filters_the_faq(staff, api):
    mine = created(api)
    created(api, question="Opening hours?", answer="9 to 5.", intent="store_hours")
    theirs = foreign_entry()

    listed = staff.get("/admin/chatbot/faq/").content.decode()
    searched = staff.get("/admin/chatbot/faq/", {"q": "Vietnam"}).content.decode()
    filtered = staff.get("/admin/chatbot/faq/", {"intent": "store_hours"}).content.decode()
    by_merchant = staff.get("/admin/chatbot/faq/", {"merchant__id__exact": str(theirs.merchant_id)}).content.decode()

    assert "Do you ship to Vietnam?" in listed and "Opening hours?" in listed and "Theirs?" in listed
    assert "Do you ship to Vietnam?" in searched and "Opening hours?" not in searched
    assert "Opening hours?" in filtered and "Do you ship to Vietnam?" not in filtered
    assert "Theirs?" in by_merchant and "Opening hours?" not in by_merchant
    assert staff.get(f"/admin/chatbot/faq/{mine['id']}/change/").status_code == 200


def test_the_admin_changes_an_entry_through_the_apis_checks(staff, api):
    entry = created(api)
    url = f"/admin/chatbot/faq/{entry['id']}/change/"

    refused = staff.post(url, {"question": ENTRY["question"], "answer": "a" * 4001, "intent": ""})
    saved = staff.post(url, {"question": "Ship to Hanoi?", "answer": "Yes.", "intent": "shipping_info"})

    assert refused.status_code == 200
    assert saved.status_code == 302
    stored = FAQ.objects.get(pk=entry["id"])
    assert (stored.question, stored.answer, stored.intent) == ("Ship to Hanoi?", "Yes.", "shipping_info")


def test_the_admin_deletes_entries_through_the_service(staff, api):
    entry = created(api)
    response = staff.post(
        "/admin/chatbot/faq/", {"action": "delete_selected", "_selected_action": [entry["id"]], "post": "yes"}
    )
    assert response.status_code == 302
    assert not FAQ.objects.exists()
