"""Operational endpoints and Django's error handlers, all answering the envelope."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mktx.api.middleware import envelope_for_status
from mktx.api.schema import postman_collection

logger = logging.getLogger("mktx.api")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"success": True, "data": {"status": "ok"}})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    try:
        from django_q.brokers import get_broker

        if not get_broker().ping():
            return "the task broker did not answer"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"{type(exc).__name__}: {exc}"
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    failures = {name: error for name, error in (("database", _check_database()), ("broker", _check_broker())) if error}
    checks = {name: ("fail" if name in failures else "ok") for name in ("database", "broker")}
    if failures:
        logger.warning("not ready: %s", failures)
        return JsonResponse(
            {
                "success": False,
                "error": "Service not ready",
                "code": "SERVICE_UNAVAILABLE",
                "details": {"checks": checks, "errors": failures},
            },
            status=503,
        )
    return JsonResponse({"success": True, "data": {"status": "ready", "checks": checks}})


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(400, getattr(request, "request_id", "-"))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(403, getattr(request, "request_id", "-"))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(404, getattr(request, "request_id", "-"))


def server_error(request: HttpRequest) -> HttpResponse:
    return envelope_for_status(500, getattr(request, "request_id", "-"))


class PostmanCollectionView(APIView):
    """The Postman collection, generated from the OpenAPI document on each request (it is small)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        base_url = request.build_absolute_uri("/").rstrip("/") or settings.MKTX_PUBLIC_URL
        return Response(postman_collection(schema, base_url))
