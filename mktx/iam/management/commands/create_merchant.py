from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mktx.api.errors import ApiError
from mktx.iam.models import Role
from mktx.iam.services import merchant_create, merchant_user_add


class Command(BaseCommand):
    help = "Create a merchant with its first user, or with --merchant-id add a user to an existing merchant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the merchant's name (with --merchant-id: the user's)")
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument(
            "--role", choices=Role.values, default=None, help="default: owner, or agent with --merchant-id"
        )
        parser.add_argument("--merchant-id", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["merchant_id"]:
                user = merchant_user_add(
                    merchant_id=options["merchant_id"],
                    email=options["email"],
                    password=options["password"],
                    role=options["role"] or Role.AGENT,
                    name=options["name"],
                )
                merchant_id = user.merchant_id
            else:
                merchant, user = merchant_create(
                    name=options["name"],
                    email=options["email"],
                    password=options["password"],
                    role=options["role"] or Role.OWNER,
                )
                merchant_id = merchant.id
        except ApiError as exc:
            raise CommandError(exc.message, returncode=2) from None
        self.stdout.write(
            json.dumps({"merchantId": str(merchant_id), "userId": str(user.id), "email": user.email, "role": user.role})
        )
