"""Issue 11, points 3, 8 and 11: password guessing (addresses, emails, the admin), tokens of users that are gone,
external principals, and refresh-token reuse under concurrency."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
import time_machine
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from mktx.iam.models import Role
from tests.factories import PASSWORD, UserFactory, access_token

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ACCOUNTS = "/api/v1/mkt-x/accounts"


def _login(email: str, password: str, **extra):
    return APIClient().post(LOGIN, {"email": email, "password": password}, format="json", **extra)


def _assert_rate_limited(response) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["details"]["retryAfter"] >= 1
    assert int(response["Retry-After"]) >= 1


# --- point 3: brute force -------------------------------------------------------------------------------------------


def test_it_stops_a_password_guesser_who_rotates_x_forwarded_for(owner):
    # when: 60 wrong passwords, each claiming a fresh client address
    statuses = [
        _login(owner.email, f"guess-{i}", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(60)
    ]
    # then: refused long before the end, and the right password is refused too while the limit lasts
    assert statuses[:10] == [401] * 10
    assert statuses.index(429) <= 20
    assert set(statuses[statuses.index(429) :]) == {429}
    right = _login(owner.email, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.250")
    _assert_rate_limited(right)
    assert "accessToken" not in str(right.content)


def test_it_limits_failed_passwords_per_email_and_leaves_other_emails_alone(settings, owner, merchant):
    settings.MKTX_LOGIN_RATE_LIMIT = (1000, 60)  # the per-address limit out of the way
    other = UserFactory.create(merchant=merchant, role=Role.AGENT)
    # given: ten failures for one email, from ten different real addresses
    for i in range(10):
        assert _login(owner.email, f"guess-{i}", REMOTE_ADDR=f"203.0.113.{i}").status_code == 401
    # then: that email is refused, wrong or right password, whatever its spelling
    _assert_rate_limited(_login(owner.email, "guess-again", REMOTE_ADDR="203.0.113.50"))
    _assert_rate_limited(_login(owner.email.upper(), PASSWORD, REMOTE_ADDR="203.0.113.51"))
    # and another email still logs in from the same address
    response = _login(other.email, PASSWORD, REMOTE_ADDR="203.0.113.50")
    assert response.status_code == 200
    assert response.json()["data"]["accessToken"]


def test_it_forgets_failures_when_the_window_ends(settings, owner):
    settings.MKTX_LOGIN_FAILURE_LIMIT = 2
    settings.MKTX_LOGIN_FAILURE_WINDOW = 1
    # wait for the start of a fresh one-second window so both failures land in it
    time.sleep(1 - time.time() % 1)
    assert _login(owner.email, "nope-one").status_code == 401
    assert _login(owner.email, "nope-two").status_code == 401
    assert _login(owner.email, PASSWORD).status_code == 429
    time.sleep(1.05)
    assert _login(owner.email, PASSWORD).status_code == 200


def test_the_failure_window_starts_at_the_first_failure_not_at_a_clock_boundary(settings, owner):
    settings.MKTX_LOGIN_RATE_LIMIT = (1000, 60)
    first = datetime(2026, 12, 1, 10, 14, 50, tzinfo=UTC)  # ten seconds before a quarter-hour boundary
    with time_machine.travel(first, tick=False) as traveller:
        for i in range(5):
            assert _login(owner.email, f"before-{i}").status_code == 401
        traveller.move_to(first + timedelta(seconds=20))  # past 10:15:00
        for i in range(5):
            assert _login(owner.email, f"after-{i}").status_code == 401
        _assert_rate_limited(_login(owner.email, PASSWORD))
        traveller.move_to(first + timedelta(seconds=settings.MKTX_LOGIN_FAILURE_WINDOW - 1))
        _assert_rate_limited(_login(owner.email, PASSWORD))
        traveller.move_to(first + timedelta(seconds=settings.MKTX_LOGIN_FAILURE_WINDOW + 1))
        assert _login(owner.email, PASSWORD).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_for_one_email_get_no_more_password_checks_than_the_limit(settings):
    from mktx.iam.login_guard import login_attempt_begin

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and not settings.REDIS_URL:
        pytest.skip("the database cache of the in-memory SQLite test database is not shared between threads")
    settings.MKTX_LOGIN_FAILURE_LIMIT = 10
    barrier = threading.Barrier(30)
    allowed: list[bool] = []

    def guess() -> None:
        barrier.wait()
        allowed.append(login_attempt_begin("victim@shop.test") is None)

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 10


def test_a_right_password_is_not_counted_as_a_failure(settings, owner):
    settings.MKTX_LOGIN_FAILURE_LIMIT = 3
    settings.MKTX_LOGIN_RATE_LIMIT = (1000, 60)
    for _ in range(5):
        assert _login(owner.email, PASSWORD).status_code == 200
    assert [_login(owner.email, "nope-nope").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_it_ignores_x_forwarded_for_without_trusted_proxies(settings, owner):
    settings.MKTX_LOGIN_RATE_LIMIT = (3, 60)
    settings.MKTX_LOGIN_FAILURE_LIMIT = 1000
    statuses = [_login(owner.email, "nope-nope", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_behind_one_trusted_proxy_it_keys_on_the_right_most_forwarded_address(settings, owner):
    settings.MKTX_TRUSTED_PROXIES = 1
    settings.MKTX_LOGIN_RATE_LIMIT = (3, 60)
    settings.MKTX_LOGIN_FAILURE_LIMIT = 1000
    # the client prepends what it likes; the proxy appends the address it saw, 192.0.2.7
    statuses = [
        _login(owner.email, "nope-nope", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}, 192.0.2.7").status_code for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # another client behind the same proxy is not limited
    assert _login(owner.email, "nope-nope", HTTP_X_FORWARDED_FOR="192.0.2.7, 192.0.2.8").status_code == 401


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "10.1.1.1"),
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        (2, "6.6.6.6, 198.51.100.1, 172.16.0.2", "198.51.100.1"),
        (2, "198.51.100.1", "10.1.1.1"),  # fewer entries than proxies: not through the proxies
        (1, "not-an-address", "10.1.1.1"),
        (1, "", "10.1.1.1"),
        (1, " 2001:db8::1 ", "2001:db8::1"),
    ],
)
def test_the_client_address_is_read_the_same_way_everywhere(settings, proxies, forwarded, expected):
    from mktx.api.throttling import client_address

    settings.MKTX_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def _admin_login(client: Client, email: str, password: str, **extra):
    return client.post(
        "/admin/login/?next=/admin/", {"username": email, "password": password, "next": "/admin/"}, **extra
    )


@pytest.fixture
def staff(merchant):
    return UserFactory.create(merchant=merchant, role=Role.OWNER, is_staff=True, is_superuser=True)


def test_the_admin_login_limits_failed_passwords_per_username(settings, staff):
    settings.MKTX_LOGIN_RATE_LIMIT = (1000, 60)
    for i in range(10):
        response = _admin_login(Client(), staff.email, f"guess-{i}", REMOTE_ADDR=f"203.0.113.{i}")
        assert response.status_code == 200  # the form again, with its error
    # then: the right password is refused while the limit lasts, with a clear error and no session
    client = Client()
    response = _admin_login(client, staff.email, PASSWORD, REMOTE_ADDR="203.0.113.99")
    assert response.status_code in (200, 429)
    assert "Too many login attempts" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still sent to the login page
    assert "_auth_user_id" not in client.session


def test_the_admin_login_limits_attempts_per_address(settings, staff):
    settings.MKTX_LOGIN_RATE_LIMIT = (3, 60)
    settings.MKTX_LOGIN_FAILURE_LIMIT = 1000
    for i in range(3):
        _admin_login(Client(), f"someone{i}@shop.test", "nope-nope", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    client = Client()
    response = _admin_login(client, staff.email, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.200")
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # a different address still logs in
    assert _admin_login(Client(), staff.email, PASSWORD, REMOTE_ADDR="192.0.2.44").status_code == 302


# --- point 8: tokens of users that are gone; external principals --------------------------------------------------


def _get(token: str):
    return APIClient().get(ACCOUNTS, HTTP_AUTHORIZATION=f"Bearer {token}")


def _hs(claims: dict, key: str) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, key, algorithm="HS256")


def test_the_token_of_a_deleted_user_is_refused(merchant):
    # given: an admin's token, and then the admin is deleted
    user = UserFactory.create(merchant=merchant, role=Role.ADMIN)
    token = access_token(user)
    assert _get(token).status_code == 200
    user.delete()
    # then
    response = _get(token)
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_the_token_of_an_inactive_user_is_refused(merchant):
    user = UserFactory.create(merchant=merchant, role=Role.OWNER)
    token = access_token(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert _get(token).status_code == 401


def test_a_token_signed_with_our_key_for_an_unknown_user_is_refused_without_an_external_iam(settings, merchant):
    # given no external IAM configured, every valid token is ours: an unknown user is a user that is gone
    assert not settings.JWT_VERIFYING_KEY
    token = _hs(
        {"merchant_id": str(merchant.id), "user_id": str(uuid.uuid4()), "role": "owner"}, settings.JWT_SIGNING_KEY
    )
    assert _get(token).status_code == 401
    assert _get(_hs({"merchant_id": str(merchant.id), "role": "owner"}, settings.JWT_SIGNING_KEY)).status_code == 401


def test_an_external_iam_principal_is_accepted_with_its_own_key(settings, merchant):
    settings.JWT_VERIFYING_KEY = "the-external-iam-shared-secret-0123456789abcdef"
    claims = {"merchant_id": str(merchant.id), "user_id": str(uuid.uuid4()), "role": "agent"}
    # a token of the external IAM names a user that is not stored here: accepted, with the token's role
    response = _get(_hs(claims, settings.JWT_VERIFYING_KEY))
    assert response.status_code == 200
    # but a token signed with our own key still must name a user stored here
    assert _get(_hs(claims, settings.JWT_SIGNING_KEY)).status_code == 401


def test_with_one_shared_key_our_own_tokens_are_told_apart_by_their_issuer(settings, merchant):
    settings.JWT_VERIFYING_KEY = settings.JWT_SIGNING_KEY  # the external IAM shares our key
    user = UserFactory.create(merchant=merchant, role=Role.OWNER)
    token = access_token(user)
    user.delete()
    assert _get(token).status_code == 401
    external = _hs(
        {"merchant_id": str(merchant.id), "user_id": str(uuid.uuid4()), "role": "agent"}, settings.JWT_SIGNING_KEY
    )
    assert _get(external).status_code == 200


# --- point 11: refresh-token reuse ----------------------------------------------------------------------------------


def test_a_spent_refresh_token_is_refused_every_time(owner):
    refresh = _login(owner.email, PASSWORD).json()["data"]["refreshToken"]
    assert APIClient().post(REFRESH, {"refreshToken": refresh}, format="json").status_code == 200
    for _ in range(3):
        response = APIClient().post(REFRESH, {"refreshToken": refresh}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"


def _refresh_concurrently(url: str, token: str, n: int) -> list[int]:
    """`n` refreshes of one token, released together, each on its own connection (and its own server thread)."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def use() -> None:
        with requests.Session() as session:
            barrier.wait()
            statuses.append(session.post(url + REFRESH, json={"refreshToken": token}, timeout=10).status_code)

    threads = [threading.Thread(target=use) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_succeed_exactly_once(live_server, merchant):
    user = UserFactory.create(merchant=merchant, role=Role.OWNER)
    for attempt in range(3):  # three rounds: a race that is won by chance once must still lose overall
        login = requests.post(live_server.url + LOGIN, json={"email": user.email, "password": PASSWORD}, timeout=10)
        statuses = _refresh_concurrently(live_server.url, login.json()["data"]["refreshToken"], 4)
        assert sorted(statuses) == [200, 401, 401, 401], f"round {attempt}: {statuses}"
