"""Invariants of the configuration as Django system checks (`manage.py check --deploy` runs them all)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_secrets(app_configs: Any, **kwargs: Any) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        problems.append(Error("DJANGO_SECRET_KEY is the development key", id="mktx.E001"))
    if settings.DEBUG:
        problems.append(Warning("DEBUG is on", id="mktx.W001"))
    if not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is unset: rate-limit counters live in the database cache and tasks in the ORM broker",
                id="mktx.W002",
            )
        )
    if not settings.IS_POSTGRES:
        problems.append(Warning("DATABASE_URL is not PostgreSQL; SQLite is for development", id="mktx.W003"))
    return problems


@register()
def check_x_credentials(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if not settings.DEBUG and not (settings.X_CONSUMER_KEY and settings.X_CONSUMER_SECRET):
        return [
            Warning(
                "X_CONSUMER_KEY and X_CONSUMER_SECRET are unset: "
                "accounts cannot connect and webhooks cannot be verified",
                id="mktx.W010",
            )
        ]
    return []
