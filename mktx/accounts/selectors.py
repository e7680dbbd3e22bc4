from __future__ import annotations

import uuid

from django.db.models import QuerySet

from mktx.accounts.models import Account


def accounts_of(merchant_id: uuid.UUID) -> QuerySet[Account]:
    return Account.objects.filter(merchant_id=merchant_id)
