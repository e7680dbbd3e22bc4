from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins

from mktx.accounts.filters import AccountFilter
from mktx.accounts.models import Account
from mktx.accounts.selectors import accounts_of
from mktx.accounts.serializers import AccountOutput
from mktx.api.viewsets import MerchantViewSet


@extend_schema_view(list=extend_schema(summary="List connected accounts", tags=["accounts"]))
class AccountViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = AccountOutput
    filterset_class = AccountFilter

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Account]:
        return accounts_of(merchant_id)
