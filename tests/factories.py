from __future__ import annotations

import factory
from django.utils import timezone

from contacts.models import Contact, Conversation, Message
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


class ContactFactory(factory.django.DjangoModelFactory[Contact]):
    class Meta:
        model = Contact

    account = factory.SubFactory(AccountFactory)
    merchant = factory.SelfAttribute("account.merchant")
    twitter_user_id = factory.Sequence(lambda n: str(5_000_000 + n))
    username = factory.Sequence(lambda n: f"customer_{n}")
    display_name = factory.Sequence(lambda n: f"Customer {n}")
    last_interaction_at = factory.LazyFunction(timezone.now)
    first_interaction_at = factory.LazyFunction(timezone.now)


class ConversationFactory(factory.django.DjangoModelFactory[Conversation]):
    class Meta:
        model = Conversation

    contact = factory.SubFactory(ContactFactory)
    account = factory.SelfAttribute("contact.account")
    merchant = factory.SelfAttribute("contact.merchant")
    started_at = factory.LazyFunction(timezone.now)
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    account = factory.SelfAttribute("conversation.account")
    direction = "inbound"
    origin = "customer"
    status = "received"
    content = factory.Sequence(lambda n: f"message {n}")
    sent_at = factory.LazyFunction(timezone.now)


def access_token(user: User) -> str:
    """A real access token for `user`, as login would issue it."""
    return str(tokens_for_user(user)["accessToken"])
