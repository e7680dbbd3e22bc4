"""What the sandbox sends to webhooks: X's Account Activity payloads, signed with the consumer secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import requests

from xsandbox import links


def signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def crc_check(url: str, secret: str, timeout: float = 3.0) -> tuple[bool, str]:
    """X's challenge-response check against a webhook URL: (passed, reason)."""
    token = secrets.token_urlsafe(24)
    try:
        response = requests.get(url, params={"crc_token": token, "nonce": secrets.token_hex(8)}, timeout=timeout)
    except requests.RequestException as exc:
        return False, f"CRC request failed: {type(exc).__name__}"
    if response.status_code != 200:
        return False, f"CRC answered HTTP {response.status_code}"
    try:
        answer = response.json().get("response_token")
    except (ValueError, AttributeError):
        return False, "CRC answer is not JSON with response_token"
    if answer != signature(secret, token.encode()):
        return False, "CRC response_token does not match"
    return True, "ok"


def post(url: str, secret: str, payload: dict[str, Any], timeout: float = 3.0) -> int:
    """POST a signed payload; the HTTP status, or 0 when the webhook could not be reached."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "x-twitter-webhooks-signature": signature(secret, body)}
    try:
        return requests.post(url, data=body, headers=headers, timeout=timeout).status_code
    except requests.RequestException:
        return 0


def user_object(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "created_timestamp": str(user.created_ms),
        "name": user.name,
        "screen_name": user.username,
        "protected": False,
        "verified": False,
        "followers_count": 0,
        "friends_count": 0,
        "statuses_count": 0,
        "profile_image_url": user.profile_image_url.replace("https://", "http://"),
        "profile_image_url_https": user.profile_image_url,
    }


def dm_event(dm: Any, media_urls: dict[str, str]) -> dict[str, Any]:
    message_data: dict[str, Any] = {
        "text": dm.x_text or dm.text,
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": links.shown(dm.urls)},
    }
    if dm.media_ids:
        media_id = dm.media_ids[0]
        media: dict[str, Any] = {
            "id": int(media_id),
            "id_str": media_id,
            "media_url_https": media_urls.get(media_id, ""),
        }
        if dm.media_link:
            media |= {"url": dm.media_link, "expanded_url": f"https://twitter.com/messages/media/{dm.id}"}
        message_data["attachment"] = {"type": "media", "media": media}
    if dm.quick_reply_response:
        message_data["quick_reply_response"] = dm.quick_reply_response
    create: dict[str, Any] = {
        "target": {"recipient_id": dm.recipient_id},
        "sender_id": dm.sender_id,
        "message_data": message_data,
    }
    if dm.source_app_id:
        create["source_app_id"] = dm.source_app_id
    return {"type": "message_create", "id": dm.id, "created_timestamp": str(dm.created_ms), "message_create": create}
