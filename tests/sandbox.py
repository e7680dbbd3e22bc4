"""Helpers to drive the X sandbox from tests, over HTTP as a person or X would."""

from __future__ import annotations

import time
from typing import Any

import requests

from xsandbox.server import SandboxServer


class SandboxControl:
    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("/_sandbox/reset", {})

    def user(self, username: str, name: str | None = None) -> dict[str, Any]:
        return self._post("/_sandbox/users", {"username": username, "name": name or username.title()})

    def new_token(self, user_id: str) -> dict[str, Any]:
        return self._post("/_sandbox/tokens", {"userId": user_id})

    def dm(self, sender_id: str, recipient_id: str, text: str) -> dict[str, Any]:
        return self._post("/_sandbox/dm", {"senderId": sender_id, "recipientId": recipient_id, "text": text})

    def follow(self, source_id: str, target_id: str) -> dict[str, Any]:
        return self._post("/_sandbox/follow", {"sourceId": source_id, "targetId": target_id})

    def unfollow(self, source_id: str, target_id: str) -> dict[str, Any]:
        return self._post("/_sandbox/unfollow", {"sourceId": source_id, "targetId": target_id})

    def read(self, reader_id: str, other_id: str, last_read_event_id: str) -> dict[str, Any]:
        body = {"readerId": reader_id, "otherId": other_id, "lastReadEventId": last_read_event_id}
        return self._post("/_sandbox/read", body)

    def revoke(self, user_id: str) -> dict[str, Any]:
        return self._post("/_sandbox/revoke", {"userId": user_id})

    def fault(self, **spec: Any) -> dict[str, Any]:
        return self._post("/_sandbox/faults", spec)

    def limits(self, **limits: int) -> dict[str, Any]:
        return self._post("/_sandbox/limits", limits)

    def register_webhook(self, url: str) -> dict[str, Any]:
        return self._post("/_sandbox/webhooks", {"url": url})

    def dms(self, **query: str) -> list[dict[str, Any]]:
        return requests.get(self.url + "/_sandbox/dms", params=query, timeout=30).json()

    def media(self) -> list[dict[str, Any]]:
        return requests.get(self.url + "/_sandbox/media", timeout=30).json()

    def expire_media(self, media_id: str | None = None) -> dict[str, Any]:
        return self._post("/_sandbox/media/expire", {"mediaId": media_id})

    def deliveries(self, wait: float = 5.0) -> list[dict[str, Any]]:
        response = requests.get(self.url + "/_sandbox/deliveries", params={"wait": wait}, timeout=wait + 30)
        return response.json()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError("condition not met in time")
