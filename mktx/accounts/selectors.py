from __future__ import annotations

import uuid

from django.db.models import QuerySet

from mktx.accounts.models import Account


def accounts_of(merchant_id: uuid.UUID) -> QuerySet[Account]:
    return Account.objects.filter(merchant_id=merchant_id)


def active_account_for_x_user(twitter_user_id: str) -> Account | None:
    """The one active account (across merchants) of an X user, as webhooks name it."""
    return Account.objects.filter(twitter_user_id=twitter_user_id, status="active").first()


def account_statistics(account: Account) -> dict[str, int]:
    """Counts from stored data. Contacts, conversations and messages arrive with the inbox."""
    return {"total_contacts": 0, "total_conversations": 0, "messages_this_month": 0}
