"""The OpenAPI document and the Postman collection: built once per process, with the public base URL (issue 11, 12)."""

from __future__ import annotations

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from mktx.api import schema

pytestmark = pytest.mark.django_db
SCHEMA, POSTMAN = "/api/v1/mkt-x/schema/", "/api/v1/mkt-x/postman-collection.json"


@pytest.fixture
def builds(monkeypatch):
    """How many times the OpenAPI document is generated."""
    schema.schema_cache_clear()
    count = {"n": 0}
    original = SchemaGenerator.get_schema

    def counting(self, *args, **kwargs):
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    yield count
    schema.schema_cache_clear()


def test_anonymous_requests_for_the_schema_and_the_collection_build_it_once(builds):
    client = Client()
    first = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert first.status_code == 200
    for _ in range(3):
        again = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert again.json() == first.json()
        assert client.get(POSTMAN).status_code == 200
    assert client.get(SCHEMA).status_code == 200  # YAML: rendered from the same document
    assert builds["n"] == 1


def test_the_collection_takes_its_base_url_from_mktx_public_url_not_from_the_host_header(builds, settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.MKTX_PUBLIC_URL = "https://api.goodgo.example"
    collection = Client().get(POSTMAN, HTTP_HOST="attacker.example").json()
    assert {"key": "baseUrl", "value": "https://api.goodgo.example"} in collection["variable"]
    assert "attacker.example" not in str(collection)

    settings.MKTX_PUBLIC_URL = "https://api2.goodgo.example"  # another setting, another collection
    collection = Client().get(POSTMAN).json()
    assert {"key": "baseUrl", "value": "https://api2.goodgo.example"} in collection["variable"]
