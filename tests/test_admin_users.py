"""The back office's user forms validate as the API and the commands do: password validators, normalised emails
(issue 11, point 12)."""

from __future__ import annotations

import pytest
from django.test import Client

from mktx.iam.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _add(staff: Client, merchant, email: str, password: str):
    return staff.post(
        "/admin/iam/user/add/",
        {"email": email, "password": password, "name": "Ann", "merchant": str(merchant.pk), "role": "agent"},
    )


@pytest.mark.parametrize("password", ["short", "password123", "12345678"])
def test_adding_a_user_refuses_a_password_the_validators_refuse(staff, merchant, password):
    before = User.objects.count()
    response = _add(staff, merchant, "ann@goodgo.test", password)
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["password"]
    assert User.objects.count() == before


def test_adding_a_user_stores_the_normalised_email_and_the_user_can_log_in(staff, merchant):
    response = _add(staff, merchant, "  Ann@GoodGo.TEST ", "a-long-enough-passphrase")
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="ann@goodgo.test")
    assert user.check_password("a-long-enough-passphrase")
    login = Client().post(
        "/api/v1/auth/login",
        {"email": "ann@goodgo.test", "password": "a-long-enough-passphrase"},
        content_type="application/json",
    )
    assert login.status_code == 200


def test_an_email_differing_only_in_case_is_a_duplicate(staff, merchant):
    UserFactory.create(merchant=merchant, email="boss@goodgo.test")
    before = User.objects.count()
    response = _add(staff, merchant, "BOSS@GoodGo.test", "a-long-enough-passphrase")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email"]
    assert User.objects.count() == before


def test_changing_a_users_email_normalises_it(staff, merchant):
    user = UserFactory.create(merchant=merchant, email="old@goodgo.test")
    UserFactory.create(merchant=merchant, email="taken@goodgo.test")
    page = {
        "email": "Taken@GoodGo.test",
        "name": user.name,
        "merchant": str(merchant.pk),
        "role": user.role,
        "is_active": "on",
    }
    refused = staff.post(f"/admin/iam/user/{user.pk}/change/", page)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["email"]

    changed = staff.post(f"/admin/iam/user/{user.pk}/change/", {**page, "email": " New@GoodGo.TEST"})
    assert changed.status_code == 302, changed.content.decode()[:2000]
    user.refresh_from_db()
    assert user.email == "new@goodgo.test"
