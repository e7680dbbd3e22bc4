from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from mktx.iam.models import Role, User
from tests.factories import MerchantFactory, UserFactory, access_token


@pytest.fixture(autouse=True)
def _fresh_cache(db):
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def merchant():
    return MerchantFactory.create()


@pytest.fixture
def owner(merchant) -> User:
    return UserFactory.create(merchant=merchant, role=Role.OWNER)


@pytest.fixture
def agent(merchant) -> User:
    return UserFactory.create(merchant=merchant, role=Role.AGENT)


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer " + access_token(user))
        return client

    return make


@pytest.fixture
def api(client_for, owner) -> APIClient:
    """An API client logged in as the merchant's owner."""
    return client_for(owner)
