"""`skip`/`take` pagination answering `pagination: {page, limit, total, totalPages}`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

from mktx.api.params import query_int

DEFAULT_TAKE = 20
MAX_TAKE = 100


def read_skip_take(request: Request) -> tuple[int, int]:
    skip = query_int(request, "skip", default=0, minimum=0)
    take = query_int(request, "take", default=DEFAULT_TAKE, minimum=1, maximum=MAX_TAKE)
    return skip, take


def pagination_block(*, skip: int, take: int, total: int) -> dict[str, int]:
    return {"page": skip // take + 1, "limit": take, "total": total, "totalPages": math.ceil(total / take)}


def paginated_response(data: Any, *, skip: int, take: int, total: int) -> Response:
    response = Response(
        {"success": True, "data": data, "pagination": pagination_block(skip=skip, take=take, total=total)}
    )
    response.enveloped = True  # type: ignore[attr-defined]
    return response


class SkipTakePagination(BasePagination):
    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.skip, self.take = read_skip_take(request)
        self.total = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)
        if self.skip >= self.total:
            return []
        return list(queryset[self.skip : self.skip + self.take])

    def get_paginated_response(self, data: Any) -> Response:
        return paginated_response(data, skip=self.skip, take=self.take, total=self.total)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["success", "data", "pagination"],
            "properties": {
                "success": {"type": "boolean", "enum": [True]},
                "data": schema,
                "pagination": {"$ref": "#/components/schemas/Pagination"},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "skip",
                "required": False,
                "in": "query",
                "description": "How many items to skip (default 0).",
                "schema": {"type": "integer", "minimum": 0, "default": 0},
            },
            {
                "name": "take",
                "required": False,
                "in": "query",
                "description": f"How many items to return (default {DEFAULT_TAKE}, at most {MAX_TAKE}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TAKE, "default": DEFAULT_TAKE},
            },
        ]
