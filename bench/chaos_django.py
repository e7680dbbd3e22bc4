"""The chaos runs' work inside Django (run as a subprocess with the deployment's environment; bench/chaos.py).

    python -m bench.chaos_django owner|contacts < spec.json    (prints one JSON line)

`owner`: `{"merchant"?, "name"?}`: an owner of the merchant (a new merchant named `name` when none is given);
answers the merchant's id and an access token for the API. `contacts`: `{"merchant"}`: the ids of its contacts.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import django

django.setup()

from contacts.models import Contact  # noqa: E402
from mktx.iam.models import Merchant, Role, User  # noqa: E402
from mktx.iam.tokens import tokens_for_user  # noqa: E402


def owner(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("merchant"):
        merchant = Merchant.objects.get(pk=spec["merchant"])
    else:
        merchant = Merchant.objects.create(name=spec.get("name") or "Chaos")
    email = f"owner-{uuid.uuid4().hex[:12]}@chaos.bench"
    user = User.objects.create_user(email, "bench-password-1", merchant=merchant, role=Role.OWNER)
    return {"merchant": str(merchant.pk), "token": str(tokens_for_user(user)["accessToken"])}


def contacts(spec: dict[str, Any]) -> dict[str, Any]:
    ids = Contact.objects.filter(merchant_id=spec["merchant"]).order_by("twitter_user_id").values_list("pk", flat=True)
    return {"contacts": [str(pk) for pk in ids]}


def main() -> None:
    command = sys.argv[1]
    spec = json.loads(sys.stdin.read() or "{}")
    print(json.dumps({"owner": owner, "contacts": contacts}[command](spec)))


if __name__ == "__main__":
    main()
