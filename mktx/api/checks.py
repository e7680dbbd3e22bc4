"""Invariants of the configuration as Django system checks (`manage.py check --deploy` runs them all)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register, run_checks
from django.core.exceptions import ImproperlyConfigured


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
    if settings.MKTX_ATTACHMENT_ALLOW_PRIVATE:
        problems.append(
            Warning(
                "MKTX_ATTACHMENT_ALLOW_PRIVATE is on: any user can make the service fetch internal addresses",
                id="mktx.W004",
            )
        )
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


@register()
def check_worker_lanes(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """The campaign sender's and the flow resumer's loops each hold a task worker while they run: with no worker
    left over, inbound webhooks wait for a loop to hand over."""
    workers = int(settings.Q_CLUSTER["workers"])  # type: ignore[call-overload]
    loops = settings.MKTX_SENDER_LANES + settings.MKTX_FLOW_LANES
    if not settings.Q_CLUSTER.get("sync") and loops >= workers:
        return [
            Warning(
                f"MKTX_SENDER_LANES + MKTX_FLOW_LANES = {loops} loops may hold all {workers} MKTX_WORKERS: inbound "
                "webhooks and flow steps would wait for a loop to hand over",
                hint="raise MKTX_WORKERS above the lanes' sum",
                id="mktx.W011",
            )
        ]
    return []


@register(Tags.security)
def check_production_keys(app_configs: Any, **kwargs: Any) -> list[Error]:
    """Not deploy-only: runserver, qcluster and (through `refuse_to_start_on_errors`) gunicorn run it too."""
    if settings.DEBUG:
        return []
    problems: list[Error] = []
    signing_key = settings.JWT_SIGNING_KEY
    if settings.JWT_ALGORITHM.startswith("HS") and (not signing_key or signing_key == settings.SECRET_KEY):
        problems.append(
            Error(
                "JWT_SIGNING_KEY is unset or equal to DJANGO_SECRET_KEY",
                hint="Set JWT_SIGNING_KEY to its own random value (or to the key shared with the external IAM).",
                id="mktx.E002",
            )
        )
    if settings.FIELD_ENCRYPTION_KEYS_DERIVED or settings.SECRET_KEY in settings.FIELD_ENCRYPTION_KEYS:
        problems.append(
            Error(
                "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KEY) is unset or equal to DJANGO_SECRET_KEY",
                hint="Generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`.",
                id="mktx.E003",
            )
        )
    if not settings.ALLOWED_HOSTS:
        problems.append(
            Error(
                "DJANGO_ALLOWED_HOSTS is unset",
                hint="The host names the service answers to, comma-separated (`*` only if a proxy checks them).",
                id="mktx.E004",
            )
        )
    return problems


def refuse_to_start_on_errors() -> None:
    """gunicorn runs no system checks: the WSGI/ASGI modules call this so that a server does not start on the
    security errors (keys, hosts) on which `manage.py runserver` and `qcluster` refuse to start."""
    errors: list[CheckMessage] = [m for m in run_checks(tags=[Tags.security]) if m.is_serious()]
    if errors:
        raise ImproperlyConfigured("System check errors:\n" + "\n".join(str(m) for m in errors))
