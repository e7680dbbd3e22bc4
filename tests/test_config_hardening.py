"""Production configuration: what refuses to start, what is on by default (issue 11, points 10 and 12).

Settings are read once per process, so each production configuration is tried in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "prod-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": SECRET,
    "JWT_SIGNING_KEY": "prod-jwt-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    # check --deploy connects to neither: these only select the production backends
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/mktx_h5",
    "REDIS_URL": "redis://127.0.0.1:6379/5",
    "X_CONSUMER_KEY": "prod-consumer-key",
    "X_CONSUMER_SECRET": "prod-consumer-secret",
}
# everything this module decides is taken out of the test run's own environment
_OURS = (
    *PRODUCTION,
    "DJANGO_SETTINGS_MODULE",
    "FIELD_ENCRYPTION_KEY",
    "JWT_ALGORITHM",
    "MKTX_FAST_PASSWORD_HASHER",
    "MKTX_SSL_REDIRECT",
    "MKTX_HSTS_SECONDS",
    "MKTX_HSTS_INCLUDE_SUBDOMAINS",
    "MKTX_HSTS_PRELOAD",
    "MKTX_TRUSTED_PROXIES",
)


def _run(argv: list[str], env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    merged = {**clean, "DJANGO_SETTINGS_MODULE": "mktx.settings", **PRODUCTION, **env}
    return subprocess.run(  # noqa: S603 - this interpreter, with the fixed arguments of these tests
        [sys.executable, *argv],
        cwd=ROOT,
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _settings(env: dict[str, str | None], *names: str) -> dict[str, object]:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))"
    )
    result = _run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_check_deploy_with_production_settings_prints_no_warning():
    result = _run(["manage.py", "check", "--deploy"], {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_warns_when_private_addresses_may_be_fetched():
    result = _run(["manage.py", "check", "--deploy"], {"MKTX_ATTACHMENT_ALLOW_PRIVATE": "1"})
    assert "mktx.W004" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"JWT_SIGNING_KEY": None}, ["mktx.E002", "JWT_SIGNING_KEY"]),
        ({"JWT_SIGNING_KEY": SECRET}, ["mktx.E002", "JWT_SIGNING_KEY"]),
        ({"FIELD_ENCRYPTION_KEYS": None}, ["mktx.E003", "FIELD_ENCRYPTION_KEY"]),
        ({"FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{SECRET}"}, ["mktx.E003"]),
        ({"FIELD_ENCRYPTION_KEYS": None, "FIELD_ENCRYPTION_KEY": SECRET}, ["mktx.E003"]),
        ({"DJANGO_ALLOWED_HOSTS": None}, ["mktx.E004", "DJANGO_ALLOWED_HOSTS"]),
    ],
    ids=["jwt-unset", "jwt-is-secret", "field-unset", "field-has-secret", "single-field-is-secret", "hosts-unset"],
)
def test_it_refuses_to_start_in_production_with_a_weak_or_missing_setting(env, names):
    # `check` runs the checks runserver and qcluster run before they start
    result = _run(["manage.py", "check"], env)
    assert result.returncode != 0
    for name in names:
        assert name in result.stderr


def test_gunicorn_refuses_to_load_the_app_without_the_keys():
    # gunicorn runs no system checks: loading the WSGI application must
    refused = _run(["-c", "import mktx.wsgi"], {"JWT_SIGNING_KEY": None})
    assert refused.returncode != 0
    assert "JWT_SIGNING_KEY" in refused.stderr
    assert _run(["-c", "import mktx.wsgi"], {}).returncode == 0


def test_the_task_cluster_refuses_to_start_without_the_keys():
    refused = _run(["manage.py", "qcluster"], {"FIELD_ENCRYPTION_KEYS": None})
    assert refused.returncode != 0
    assert "mktx.E003" in refused.stderr


def test_development_needs_none_of_the_production_keys():
    unset = {"JWT_SIGNING_KEY": None, "FIELD_ENCRYPTION_KEYS": None, "DJANGO_ALLOWED_HOSTS": None}
    result = _run(["manage.py", "check"], {"DEBUG": "1", **unset})
    assert result.returncode == 0, result.stderr


def test_the_fast_password_hasher_is_refused_in_production():
    refused = _run(["-c", "import django; django.setup()"], {"MKTX_FAST_PASSWORD_HASHER": "1"})
    assert refused.returncode != 0
    assert "MKTX_FAST_PASSWORD_HASHER" in refused.stderr
    dev = _settings({"DEBUG": "1", "MKTX_FAST_PASSWORD_HASHER": "1"}, "PASSWORD_HASHERS")
    assert dev["PASSWORD_HASHERS"] == ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_production_turns_on_https_redirect_and_hsts_unless_turned_off():
    names = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS")
    default = _settings({}, *names)
    assert default["SECURE_SSL_REDIRECT"] is True
    assert int(default["SECURE_HSTS_SECONDS"]) >= 31536000  # type: ignore[call-overload]
    assert default["SECURE_PROXY_SSL_HEADER"] is None  # no trusted proxy: X-Forwarded-Proto is the client's word
    assert default["ALLOWED_HOSTS"] == ["api.example.com"]

    off = _settings({"MKTX_SSL_REDIRECT": "0", "MKTX_HSTS_SECONDS": "0", "MKTX_TRUSTED_PROXIES": "1"}, *names)
    assert off["SECURE_SSL_REDIRECT"] is False
    assert off["SECURE_HSTS_SECONDS"] == 0
    assert off["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.django_db
def test_the_https_redirect_spares_the_health_probes_and_ignores_an_untrusted_proto_header(settings):
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=None):
        client = Client()
        redirected = client.get("/api/v1/mkt-x/accounts", HTTP_X_FORWARDED_PROTO="https")
        assert redirected.status_code == 301
        assert redirected["Location"].startswith("https://")
        assert client.get("/healthz").status_code == 200
