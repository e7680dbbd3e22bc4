from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from mktx.iam.models import Merchant, User
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> dict:
    out = StringIO()
    call_command("create_merchant", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_create_merchant_prints_one_json_line_and_the_user_can_log_in():
    result = run("--name", "GoodGo", "--email", "Boss@GoodGo.test", "--password", "s3cret-pass-word")

    assert set(result) == {"merchantId", "userId", "email", "role"}
    assert result["email"] == "boss@goodgo.test"
    assert result["role"] == "owner"
    user = User.objects.get(pk=result["userId"])
    assert str(user.merchant_id) == result["merchantId"]
    assert Merchant.objects.get(pk=result["merchantId"]).name == "GoodGo"
    assert user.check_password("s3cret-pass-word")


def test_create_merchant_with_merchant_id_adds_a_user_with_a_role():
    merchant = MerchantFactory.create()
    result = run(
        "--name", "Ann", "--email", "ann@goodgo.test", "--password", "s3cret-pass-word",
        "--role", "agent", "--merchant-id", str(merchant.id),
    )  # fmt: skip
    assert result["merchantId"] == str(merchant.id)
    assert result["role"] == "agent"
    assert Merchant.objects.count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--merchant-id", "8d1c2f8e-0000-4000-8000-000000000000"],
        ["--merchant-id", "not-a-uuid"],
    ],
)
def test_create_merchant_for_an_unknown_merchant_exits_2(args):
    with pytest.raises(CommandError) as error:
        run("--name", "X", "--email", "x@goodgo.test", "--password", "s3cret-pass-word", *args)
    assert error.value.returncode == 2
    assert User.objects.count() == 0


def test_create_merchant_with_a_duplicate_email_exits_2_and_creates_nothing():
    run("--name", "A", "--email", "dup@goodgo.test", "--password", "s3cret-pass-word")
    with pytest.raises(CommandError) as error:
        run("--name", "B", "--email", "DUP@goodgo.test", "--password", "s3cret-pass-word")
    assert error.value.returncode == 2
    assert "already exists" in str(error.value)
    assert Merchant.objects.count() == 1


@pytest.mark.parametrize(("email", "password"), [("not-an-email", "s3cret-pass-word"), ("ok@goodgo.test", "short")])
def test_create_merchant_rejects_bad_input_with_exit_2(email, password):
    with pytest.raises(CommandError) as error:
        run("--name", "A", "--email", email, "--password", password)
    assert error.value.returncode == 2
    assert Merchant.objects.count() == 0


def test_ensure_demo_is_idempotent_and_only_for_debug(settings):
    settings.DEBUG = True
    call_command("ensure_demo", stdout=StringIO())
    call_command("ensure_demo", stdout=StringIO())
    user = User.objects.get(email=settings.MKTX_DEMO_EMAIL)
    assert user.role == "owner" and user.is_staff
    assert user.check_password(settings.MKTX_DEMO_PASSWORD)
    assert Merchant.objects.count() == 1

    settings.DEBUG = False
    User.objects.all().delete()
    call_command("ensure_demo", stdout=StringIO(), stderr=StringIO())
    assert not User.objects.exists()


def _django_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DEBUG", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "mktx.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refuses_the_dev_secret_key():
    refused = _django_setup({"DEBUG": "0"})
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY" in refused.stderr
    assert _django_setup({"DEBUG": "1"}).returncode == 0
    assert _django_setup({"DEBUG": "0", "DJANGO_SECRET_KEY": "a-real-production-secret-" + "z" * 20}).returncode == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("JWT_ACCESS_TTL", "an hour"),
        ("MKTX_API_RATE_LIMIT", "lots"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("REDIS_URL", "localhost:6379"),
        ("X_API_BASE_URL", "api.x.com"),
    ],
)
def test_malformed_settings_fail_loudly_naming_the_variable(name, value):
    result = _django_setup({"DEBUG": "1", name: value})
    assert result.returncode != 0
    assert name in result.stderr
