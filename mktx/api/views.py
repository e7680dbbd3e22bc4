"""Operational endpoints and Django's error handlers, all answering the envelope."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mktx.api.middleware import envelope_for_status
from mktx.api.schema import cached_postman_collection
from mktx.redis import redis_counters, redis_ping

logger = logging.getLogger("mktx.api")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"success": True, "data": {"status": "ok"}})


def _check_database() -> str | None:
    """None when the database answers, else the error (for the log only: callers may be anonymous)."""
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


def _readiness() -> tuple[dict[str, str], dict[str, str]]:
    """Each check's state (`ok`, `degraded`: serving without it, `fail`: not ready) and the errors behind them.

    Redis holds nothing the service cannot do without (mktx/redis.py), so a down Redis, and a task broker that is
    that Redis, leave the service degraded but ready; the database, and a task broker in the database, are needed.
    """
    errors: dict[str, str] = {}
    checks: dict[str, str] = {}
    database_error = _check_database()
    checks["database"] = "fail" if database_error else "ok"
    if database_error:
        errors["database"] = database_error
    broker_is_redis = bool(settings.Q_CLUSTER.get("redis"))
    if settings.REDIS_URL:
        checks["redis"] = "ok" if redis_ping() else "degraded"
        if checks["redis"] != "ok":
            errors["redis"] = "Redis did not answer"
    if broker_is_redis and settings.Q_CLUSTER.get("redis") == settings.REDIS_URL and checks.get("redis") != "ok":
        broker_error: str | None = "the task broker is the Redis that did not answer"  # do not wait for it twice
    else:
        broker_error = _check_broker()
    checks["broker"] = "ok" if not broker_error else ("degraded" if broker_is_redis else "fail")
    if broker_error:
        errors["broker"] = broker_error
    return checks, errors


def readyz(request: HttpRequest) -> JsonResponse:
    checks, errors = _readiness()
    if errors:
        logger.warning("readiness: %s", errors)
    metrics = redis_counters()
    if "fail" in checks.values():
        return JsonResponse(
            {
                "success": False,
                "error": "Service not ready",
                "code": "SERVICE_UNAVAILABLE",
                "details": {"checks": checks, "metrics": metrics},
            },
            status=503,
        )
    status = "degraded" if "degraded" in checks.values() else "ready"
    return JsonResponse({"success": True, "data": {"status": status, "checks": checks, "metrics": metrics}})


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(400, getattr(request, "request_id", "-"))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(403, getattr(request, "request_id", "-"))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return envelope_for_status(404, getattr(request, "request_id", "-"))


def server_error(request: HttpRequest) -> HttpResponse:
    return envelope_for_status(500, getattr(request, "request_id", "-"))


class PostmanCollectionView(APIView):
    """The Postman collection, generated from the OpenAPI document once per process."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(cached_postman_collection())
