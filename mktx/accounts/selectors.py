from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from mktx.accounts.models import Account


def accounts_of(merchant_id: uuid.UUID) -> QuerySet[Account]:
    return Account.objects.filter(merchant_id=merchant_id)


def active_account_for_x_user(twitter_user_id: str) -> Account | None:
    """The one active account (across merchants) of an X user, as webhooks name it."""
    return Account.objects.filter(twitter_user_id=twitter_user_id, status="active").first()


def account_statistics(account: Account) -> dict[str, int]:
    """Counts from stored data (the inbox's rows, reached through their relations to the account)."""
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return {
        "total_contacts": account.contacts.count(),
        "total_conversations": account.conversations.count(),
        "messages_this_month": account.messages.filter(created_at__gte=month_start).count(),
    }
