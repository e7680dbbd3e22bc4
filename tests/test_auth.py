from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from rest_framework.test import APIClient

from mktx.iam.models import Role
from tests.factories import PASSWORD, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/v1/mkt-x/accounts"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _hs_token(claims: dict, key: str | None = None, algorithm: str = "HS256") -> str:
    base = {"exp": int(time.time()) + 600, "iat": int(time.time())}
    return jwt.encode({**base, **claims}, key or settings.JWT_SIGNING_KEY, algorithm=algorithm)


def _get(token: str):
    return APIClient().get(ACCOUNTS, HTTP_AUTHORIZATION=f"Bearer {token}")


def _assert_unauthorized(response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "UNAUTHORIZED"
    assert body["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_login_gives_tokens_that_carry_merchant_user_and_role(owner):
    response = APIClient().post("/api/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert set(body["data"]) == {"accessToken", "refreshToken", "expiresIn"}
    assert body["data"]["expiresIn"] == 3600
    claims = _claims(body["data"]["accessToken"])
    assert claims["merchant_id"] == str(owner.merchant_id)
    assert claims["user_id"] == str(owner.id)
    assert claims["role"] == "owner"
    assert _get(body["data"]["accessToken"]).status_code == 200


def test_login_email_is_case_insensitive(owner):
    response = APIClient().post(
        "/api/v1/auth/login", {"email": owner.email.upper(), "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "user0@shop.test", "password": "wrong-password"},
        {"email": "nobody@shop.test", "password": PASSWORD},
    ],
)
def test_login_with_bad_credentials_is_401(owner, payload):
    payload = {**payload, "email": owner.email if payload["email"] == "user0@shop.test" else payload["email"]}
    response = APIClient().post("/api/v1/auth/login", payload, format="json")
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": "Invalid email or password",
        "code": "UNAUTHORIZED",
        "details": {},
    }


def test_login_of_an_inactive_user_or_a_staff_user_without_merchant_is_401(owner):
    owner.is_active = False
    owner.save()
    staff = UserFactory.create(merchant=None, is_staff=True)
    for email in (owner.email, staff.email):
        response = APIClient().post("/api/v1/auth/login", {"email": email, "password": PASSWORD}, format="json")
        assert response.status_code == 401


def test_login_without_a_password_names_the_field():
    response = APIClient().post("/api/v1/auth/login", {"email": "a@b.test"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "password"


def test_refresh_rotates_and_spends_the_refresh_token(owner):
    login = APIClient().post("/api/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json")
    refresh = login.json()["data"]["refreshToken"]

    first = APIClient().post("/api/v1/auth/refresh", {"refreshToken": refresh}, format="json")
    assert first.status_code == 200
    data = first.json()["data"]
    assert _claims(data["accessToken"])["merchant_id"] == str(owner.merchant_id)
    assert data["refreshToken"] != refresh
    assert _get(data["accessToken"]).status_code == 200

    reused = APIClient().post("/api/v1/auth/refresh", {"refreshToken": refresh}, format="json")
    _assert_unauthorized_body(reused)


def _assert_unauthorized_body(response) -> None:
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_refresh_takes_the_role_from_the_user_as_it_is_now(owner):
    login = APIClient().post("/api/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json")
    owner.role = Role.AGENT
    owner.save()
    refreshed = APIClient().post(
        "/api/v1/auth/refresh", {"refreshToken": login.json()["data"]["refreshToken"]}, format="json"
    )
    assert _claims(refreshed.json()["data"]["accessToken"])["role"] == "agent"


def test_an_access_token_is_not_a_refresh_token(owner):
    login = APIClient().post("/api/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json")
    response = APIClient().post(
        "/api/v1/auth/refresh", {"refreshToken": login.json()["data"]["accessToken"]}, format="json"
    )
    _assert_unauthorized_body(response)


def test_a_refresh_token_is_not_an_access_token(owner):
    login = APIClient().post("/api/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json")
    _assert_unauthorized(_get(login.json()["data"]["refreshToken"]))


def test_no_token_is_401():
    response = APIClient().get(ACCOUNTS)
    _assert_unauthorized(response)
    assert response.json()["error"] == "Authentication required"


def test_a_malformed_authorization_header_is_401():
    _assert_unauthorized(APIClient().get(ACCOUNTS, HTTP_AUTHORIZATION="Token abc"))
    _assert_unauthorized(APIClient().get(ACCOUNTS, HTTP_AUTHORIZATION="Bearer"))
    _assert_unauthorized(APIClient().get(ACCOUNTS, HTTP_AUTHORIZATION="Bearer not.a.jwt"))


def test_an_expired_token_is_401(owner):
    token = _hs_token(
        {"merchant_id": str(owner.merchant_id), "user_id": str(owner.id), "role": "owner", "exp": int(time.time()) - 60}
    )
    response = _get(token)
    _assert_unauthorized(response)
    assert response.json()["details"]["reason"] == "Token has expired"


def test_a_tampered_token_is_401(owner, merchant):
    other = MerchantFactory.create()
    token = _hs_token({"merchant_id": str(merchant.id), "user_id": str(owner.id), "role": "owner"})
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["merchant_id"] = str(other.id)
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _assert_unauthorized(_get(f"{header}.{forged_payload}.{signature}"))


def test_a_token_signed_with_another_key_is_401(owner):
    token = _hs_token({"merchant_id": str(owner.merchant_id), "role": "owner"}, key="another-key-" + "x" * 40)
    _assert_unauthorized(_get(token))


def test_a_forged_alg_none_token_is_401(owner):
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {
        "merchant_id": str(owner.merchant_id),
        "user_id": str(owner.id),
        "role": "owner",
        "token_type": "access",
        "exp": int(time.time()) + 600,
    }
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}."
        _assert_unauthorized(_get(token))
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    _assert_unauthorized(_get(unsigned))


def test_a_token_without_exp_is_401(owner):
    token = jwt.encode({"merchant_id": str(owner.merchant_id), "role": "owner"}, settings.JWT_SIGNING_KEY, "HS256")
    _assert_unauthorized(_get(token))


def test_an_external_iam_token_for_a_known_merchant_is_accepted(settings, merchant):
    # given a token from another IAM, which has its own key: its user is not stored here
    settings.JWT_VERIFYING_KEY = "external-iam-shared-secret-0123456789abcdef"
    claims = {"merchant_id": str(merchant.id), "user_id": str(uuid.uuid4()), "role": "agent"}
    token = _hs_token(claims, key=settings.JWT_VERIFYING_KEY)
    # when / then
    response = _get(token)
    assert response.status_code == 200
    assert response.json()["success"] is True


def test_an_external_token_for_an_unknown_or_inactive_merchant_is_401(merchant):
    _assert_unauthorized(_get(_hs_token({"merchant_id": str(uuid.uuid4()), "role": "owner"})))
    merchant.is_active = False
    merchant.save()
    _assert_unauthorized(_get(_hs_token({"merchant_id": str(merchant.id), "role": "owner"})))


def test_an_external_token_with_an_unknown_role_or_a_bad_merchant_claim_is_401(merchant):
    _assert_unauthorized(_get(_hs_token({"merchant_id": str(merchant.id), "role": "superuser"})))
    _assert_unauthorized(_get(_hs_token({"merchant_id": "not-a-uuid", "role": "owner"})))
    _assert_unauthorized(_get(_hs_token({"role": "owner"})))


def test_a_token_whose_user_belongs_to_another_merchant_is_401(owner):
    other = MerchantFactory.create()
    _assert_unauthorized(_get(_hs_token({"merchant_id": str(other.id), "user_id": str(owner.id), "role": "owner"})))


def test_a_deactivated_user_loses_access_at_once(owner, client_for):
    client = client_for(owner)
    owner.is_active = False
    owner.save()
    _assert_unauthorized(client.get(ACCOUNTS))


def test_rs256_tokens_from_an_external_iam_are_verified_with_the_public_key(settings, merchant):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings.JWT_ALGORITHM = "RS256"
    settings.JWT_VERIFYING_KEY = public_pem
    claims = {"merchant_id": str(merchant.id), "role": "admin", "exp": int(time.time()) + 600}

    assert _get(jwt.encode(claims, private, algorithm="RS256")).status_code == 200
    # an HS256 token signed with the public key as the secret (algorithm confusion) is refused
    confused = jwt.encode(claims, settings.JWT_SIGNING_KEY, algorithm="HS256")
    _assert_unauthorized(_get(confused))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _assert_unauthorized(_get(jwt.encode(claims, stranger, algorithm="RS256")))


def test_login_attempts_are_rate_limited_per_client(settings, owner):
    settings.MKTX_LOGIN_RATE_LIMIT = (3, 60)
    client = APIClient()
    statuses = [
        client.post("/api/v1/auth/login", {"email": owner.email, "password": "nope-nope"}, format="json").status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
