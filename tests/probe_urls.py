"""A URLconf for tests of the conventions: the real routes plus probes built on the same base classes."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework import mixins, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from mktx.accounts.models import Account
from mktx.accounts.selectors import accounts_of
from mktx.accounts.serializers import AccountOutput
from mktx.api.permissions import ALL_ROLES
from mktx.api.serializers import CamelSerializer
from mktx.api.viewsets import MerchantViewSet
from mktx.urls import urlpatterns as real_urlpatterns


class ProbeAccountViewSet(mixins.RetrieveModelMixin, mixins.DestroyModelMixin, MerchantViewSet):
    """Owner/admin may delete; everyone may read; `touch` is open to agents as an inbox action."""

    serializer_class = AccountOutput
    action_roles = {"touch": ALL_ROLES}

    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Account]:
        return accounts_of(merchant_id)

    def touch(self, request: Request, pk: str | None = None) -> Response:
        return Response({"id": str(self.get_object().pk)})


class EchoInput(CamelSerializer):
    display_name = serializers.CharField(max_length=10)
    schedule = serializers.DictField(child=serializers.IntegerField())


class EchoView(APIView):
    def post(self, request: Request) -> Response:
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data)


class BoomView(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("secret internals")


def plain_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internals outside DRF")


router = SimpleRouter(trailing_slash=False)
router.register("probe-accounts", ProbeAccountViewSet, basename="probe-account")
touch = ProbeAccountViewSet.as_view({"post": "touch"})

urlpatterns = [
    *real_urlpatterns,
    path("api/v1/mkt-x/probe-accounts/<str:pk>/touch", touch),
    path("api/v1/mkt-x/probe-echo", EchoView.as_view()),
    path("api/v1/mkt-x/probe-boom", BoomView.as_view()),
    path("api/v1/mkt-x/probe-plain-boom", plain_boom),
    path("api/v1/mkt-x/", include(router.urls)),
]
