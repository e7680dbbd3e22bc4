"""The end-to-end tests' client: the API served by a live server, called over real HTTP as a merchant's client
would (the `service` and `live_shop` fixtures are in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import requests

from tests.factories import access_token


def api(service: str, user: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token(user)}"}
    return requests.request(method, f"{service}/api/v1/mkt-x{path}", headers=headers, timeout=30, **kwargs)


def texts(sandbox: Any, sender: dict[str, Any], recipient: dict[str, Any], *, at_least: int = 0) -> list[str]:
    """The DMs `sender` sent `recipient` at the sandbox, oldest first; with `at_least`, once there are that many
    (the service answers a webhook before its worker has sent the reply), at most 10 s."""

    def sent() -> list[str]:
        return [dm["text"] for dm in sandbox.dms(senderId=sender["id"], recipientId=recipient["id"])]

    return sandbox.wait_for(lambda: (found := sent()) and len(found) >= at_least and found) if at_least else sent()
