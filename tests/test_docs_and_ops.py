from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_the_schema_documents_the_real_envelope_of_each_endpoint():
    response = Client().get("/api/v1/mkt-x/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()

    accounts_list = schema["paths"]["/api/v1/mkt-x/accounts"]["get"]
    ok = accounts_list["responses"]["200"]["content"]["application/json"]["schema"]
    ok = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[-1]]
    assert set(ok["properties"]) == {"success", "data", "pagination"}
    assert ok["properties"]["pagination"] == {"$ref": "#/components/schemas/Pagination"}
    item_ref = ok["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[-1]
    item = schema["components"]["schemas"][item_ref]
    assert {"id", "merchantId", "twitterUserId", "displayName", "connectedAt"} <= set(item["properties"])
    assert {p["name"] for p in accounts_list["parameters"]} >= {"skip", "take", "status"}
    for status in ("400", "401", "403", "404", "429"):
        assert accounts_list["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }

    login = schema["paths"]["/api/v1/auth/login"]["post"]
    login_ok = login["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(login_ok["properties"]) == {"success", "data"}
    token_ref = login_ok["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][token_ref]["properties"]) == {"accessToken", "refreshToken", "expiresIn"}
    assert "401" not in login["responses"] or login["responses"]["401"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_swagger_ui_is_served_with_local_assets():
    response = Client().get("/api/v1/mkt-x/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr.net" not in html


def test_the_postman_collection_is_generated_from_the_schema():
    response = Client().get("/api/v1/mkt-x/postman-collection.json")
    assert response.status_code == 200
    collection = response.json()
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    requests = {
        (item["request"]["method"], item["request"]["url"]["raw"])
        for folder in collection["item"]
        for item in folder["item"]
    }
    assert ("GET", "{{baseUrl}}/api/v1/mkt-x/accounts") in requests
    assert ("POST", "{{baseUrl}}/api/v1/auth/login") in requests
    login = next(
        item
        for folder in collection["item"]
        for item in folder["item"]
        if item["request"]["url"]["raw"].endswith("/auth/login")
    )
    assert '"email"' in login["request"]["body"]["raw"]
    assert login["request"]["auth"] == {"type": "noauth"}
    assert collection["auth"]["type"] == "bearer"


def test_healthz_and_readyz_answer():
    assert Client().get("/healthz").json() == {"success": True, "data": {"status": "ok"}}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    with_redis = {"redis": "ok"} if settings.REDIS_URL else {}  # Redis is checked where it is configured
    assert ready.json()["data"]["checks"] == {"database": "ok", "broker": "ok", **with_redis}
    assert ready.json()["data"]["status"] == "ready"


def test_readyz_is_503_when_the_database_fails(monkeypatch):
    from mktx.api import views

    monkeypatch.setattr(views, "_check_database", lambda: "OperationalError: down")
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert response.json()["details"]["checks"]["database"] == "fail"


def test_the_admin_lists_merchants_and_users(merchant, owner):
    staff = Client()
    owner.is_staff = owner.is_superuser = True
    owner.save()
    staff.force_login(owner)
    for path in ("/admin/", "/admin/iam/merchant/", "/admin/iam/user/", "/admin/accounts/account/"):
        assert staff.get(path).status_code == 200, path
    assert merchant.name in staff.get("/admin/iam/merchant/").content.decode()
    assert owner.email in staff.get(f"/admin/iam/merchant/{merchant.id}/change/").content.decode()
    page = staff.get(f"/admin/iam/user/{owner.id}/change/").content.decode()
    assert owner.password not in page  # the stored hash is never shown whole


def test_the_admin_is_for_staff_only(owner):
    client = Client()
    client.force_login(owner)
    assert client.get("/admin/iam/merchant/").status_code == 302


def test_api_responses_are_json_even_for_browsers(owner):
    response = APIClient().get("/api/v1/mkt-x/accounts", HTTP_ACCEPT="text/html")
    assert response.status_code in (401, 406)
    assert response.json()["success"] is False
