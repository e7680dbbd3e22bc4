from __future__ import annotations

import factory

from mktx.accounts.models import Account
from mktx.iam.models import Merchant, Role, User
from mktx.iam.tokens import tokens_for_user

PASSWORD = "correct-horse-battery-9"


class MerchantFactory(factory.django.DjangoModelFactory[Merchant]):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Shop {n}")


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@shop.test")
    merchant = factory.SubFactory(MerchantFactory)
    role = Role.OWNER
    password = factory.django.Password(PASSWORD)


class AccountFactory(factory.django.DjangoModelFactory[Account]):
    class Meta:
        model = Account

    merchant = factory.SubFactory(MerchantFactory)
    twitter_user_id = factory.Sequence(lambda n: str(1000000 + n))
    username = factory.Sequence(lambda n: f"shop_{n}")
    display_name = factory.LazyAttribute(lambda o: o.username.title())


def access_token(user: User) -> str:
    """A real access token for `user`, as login would issue it."""
    return str(tokens_for_user(user)["accessToken"])
