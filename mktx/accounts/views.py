from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from mktx.accounts import services
from mktx.accounts.filters import AccountFilter
from mktx.accounts.models import Account
from mktx.accounts.selectors import account_statistics, accounts_of
from mktx.accounts.serializers import (
    AccountConnectInput,
    AccountDetailOutput,
    AccountOutput,
    AccountSettingsInput,
)
from mktx.api.error_schema import error_response, x_errors
from mktx.api.viewsets import MerchantViewSet

TAGS = ["accounts"]


@extend_schema_view(
    list=extend_schema(summary="List connected accounts", tags=TAGS),
    retrieve=extend_schema(summary="Get account details", tags=TAGS, responses=AccountDetailOutput),
    create=extend_schema(
        summary="Connect an X account",
        tags=TAGS,
        request=AccountConnectInput,
        responses={
            200: AccountOutput,
            409: error_response("The X account is connected already (`DUPLICATE_RESOURCE`)"),
            **x_errors(),
        },
    ),
    update=extend_schema(
        summary="Update account settings", tags=TAGS, request=AccountSettingsInput, responses=AccountDetailOutput
    ),
    destroy=extend_schema(summary="Disconnect an account", tags=TAGS, responses={200: None, **x_errors()}),
)
class AccountViewSet(mixins.ListModelMixin, MerchantViewSet):
    serializer_class = AccountOutput
    filterset_class = AccountFilter
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Account]:
        return accounts_of(merchant_id)

    def _detail(self, account: Account) -> Response:
        return Response(AccountDetailOutput(account, context={"statistics": account_statistics(account)}).data)

    def create(self, request: Request) -> Response:
        data = AccountConnectInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.account_connect(
            merchant_id=self.merchant_id,
            oauth_token=data.validated_data["oauth_token"],
            oauth_token_secret=data.validated_data["oauth_token_secret"],
        )
        return Response(AccountOutput(account).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return self._detail(self.get_object())

    def update(self, request: Request, pk: str | None = None) -> Response:
        account = self.get_object()
        data = AccountSettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.account_settings_update(account=account, changes=data.validated_data)
        return self._detail(account)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.account_disconnect(account=self.get_object())
        return Response(None)
