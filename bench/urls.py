"""The real URLconf plus the minimal reference views the benchmarks compare against."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from mktx.urls import urlpatterns as real_urlpatterns
from webhooks_app.signatures import is_valid_signature

MINIMAL_TABLE = "bench_minimal_event"


@csrf_exempt
def minimal_webhook(request: HttpRequest) -> HttpResponse:
    """What any receiver must do at the least: verify the signature and insert the event once."""
    body = request.body
    if not is_valid_signature(settings.X_CONSUMER_SECRET, body, request.headers.get("x-twitter-webhooks-signature")):
        return HttpResponse(status=401)
    payload = json.loads(body)
    key = "dm:" + payload["direct_message_events"][0]["id"] + ":" + payload["for_user_id"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MINIMAL_TABLE} (dedup_key, payload, received_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (dedup_key) DO NOTHING",
            [key, body.decode()],
        )
    return JsonResponse({"ok": True})


def _captured_sql() -> dict[str, list[str]]:
    """The SQL the real endpoints ran for the benchmark's requests, captured before the run (bench/inbox.py)."""
    path = os.environ.get("BENCH_SQL_FILE")
    return json.loads(Path(path).read_text()) if path else {}


CAPTURED = _captured_sql()


def minimal_sql_view(request: HttpRequest, name: str) -> HttpResponse:
    """Runs the same SQL as the real endpoint named `name` and answers its rows as JSON: the floor for that read."""
    results = []
    with connection.cursor() as cursor:
        for sql in CAPTURED[name]:
            cursor.execute(sql)
            results.append([[str(v) if v is not None else None for v in row] for row in cursor.fetchall()])
    return JsonResponse({"success": True, "data": results})


def analytics_sql_view(request: HttpRequest, report: str) -> HttpResponse:
    """The hand-written SQL of bench/analytics.py for `report`, with the run's parameters (BENCH_ANALYTICS_PARAMS),
    its rows as JSON: the floor the analytics endpoints are measured against, through the same server. It checks
    the caller's token and loads the user first, as any endpoint of merchant data must."""
    from datetime import datetime

    from bench.analytics import statements
    from mktx.iam.authentication import MerchantJWTAuthentication

    if MerchantJWTAuthentication().authenticate(request) is None:  # type: ignore[arg-type]
        return HttpResponse(status=401)

    params = json.loads(os.environ["BENCH_ANALYTICS_PARAMS"])
    params["start"], params["end"] = datetime.fromisoformat(params["start"]), datetime.fromisoformat(params["end"])
    results = []
    with connection.cursor() as cursor:
        for sql in statements(report).values():
            cursor.execute(sql, params)
            results.append([[str(v) if v is not None else None for v in row] for row in cursor.fetchall()])
    return JsonResponse({"success": True, "data": results})


urlpatterns = [
    *real_urlpatterns,
    path("bench/analytics-sql/<str:report>", analytics_sql_view),
    path("bench/minimal-webhook", minimal_webhook),
    path("bench/minimal-sql/<str:name>", minimal_sql_view),
]
