"""The base every viewset over merchant data uses: the queryset is the caller's merchant's, so another merchant's
object answers 404 exactly like one that does not exist."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from rest_framework.generics import GenericAPIView
from rest_framework.viewsets import GenericViewSet

NIL_MERCHANT = uuid.UUID(int=0)


class MerchantScopedMixin(GenericAPIView):
    def get_merchant_queryset(self, merchant_id: uuid.UUID) -> QuerySet[Any]:
        """The rows of `merchant_id` this view works on; joined as the serializer needs."""
        raise NotImplementedError

    @property
    def merchant_id(self) -> uuid.UUID:
        merchant_id = getattr(self.request.user, "merchant_id", None)
        return merchant_id or NIL_MERCHANT

    def get_queryset(self) -> QuerySet[Any]:
        merchant_id = getattr(self.request.user, "merchant_id", None)
        if merchant_id is None:  # schema generation, or a request that will be refused anyway
            return self.get_merchant_queryset(NIL_MERCHANT).none()
        return self.get_merchant_queryset(merchant_id)


class MerchantViewSet(MerchantScopedMixin, GenericViewSet):
    """GenericViewSet scoped to the caller's merchant; add the mixins a resource needs."""
