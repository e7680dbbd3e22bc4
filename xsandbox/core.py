"""The sandbox's state and behaviour, independent of HTTP. Every method returns plain data."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xsandbox import lookup, webhooks
from xsandbox.control import ControlMixin
from xsandbox.delivery import DeliveryMixin
from xsandbox.model import DM, MAX_DM_TEXT, Delivery, Fault, Problem, Token, User, Webhook, iso_ms

TWITTER_EPOCH_MS = 1288834974657
DM_WINDOW_15M = 15 * 60
DM_WINDOW_24H = 24 * 3600
GENERIC_WINDOW = 15 * 60

GENERIC_LIMITS = {"users_me": 75, "dm_events": 300, "media": 500, "webhooks": 50, "subscriptions": 500, "tokens": 50}
MEDIA_TTL = 24 * 3600


def _rate(value: Any) -> float:
    """A fault's share of the calls it matches: a number above 0 and at most 1."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = 0.0
    if not 0 < rate <= 1:
        raise Problem(400, "Invalid Request", "rate must be a number above 0 and at most 1")
    return rate


class Sandbox(ControlMixin, DeliveryMixin):
    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        bearer_token: str = "",
        dm_limit_15m: int = 15,
        dm_limit_24h: int = 1440,
        state_file: str | None = None,
        app_id: str = "17000001",
    ) -> None:
        self.consumer_key, self.consumer_secret, self.bearer_token = consumer_key, consumer_secret, bearer_token
        self.app_id = app_id
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.RLock()
        self._deliveries_start()
        self._initial_limits = (dm_limit_15m, dm_limit_24h)
        self._clear()
        self._load()

    # --- state ------------------------------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.dm_limit_15m, self.dm_limit_24h = self._initial_limits
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.dms: list[DM] = []
        self.media: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.subscriptions: set[tuple[str, str]] = set()
        self.follows: set[tuple[str, str]] = set()  # (follower, followed)
        self.deliveries: list[Delivery] = []
        self.faults: list[Fault] = []
        self._dice = random.Random()
        self._dm_sends: dict[str, deque[float]] = {}
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._last_id = 0

    def _load(self) -> None:
        if not self.state_file or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text())
        self.users = {u["id"]: User(**u) for u in data.get("users", [])}
        self.tokens = {t["token"]: Token(**t) for t in data.get("tokens", [])}
        self.dms = [DM(**d) for d in data.get("dms", [])]
        self.webhooks = {w["id"]: Webhook(**w) for w in data.get("webhooks", [])}
        self.subscriptions = {(s[0], s[1]) for s in data.get("subscriptions", [])}
        self.follows = {(f[0], f[1]) for f in data.get("follows", [])}
        self.media = data.get("media", {})
        self._last_id = int(data.get("last_id", 0))

    def _save(self) -> None:
        if not self.state_file:
            return
        data = {
            "users": [asdict(u) for u in self.users.values()],
            "tokens": [asdict(t) for t in self.tokens.values()],
            "dms": [asdict(d) for d in self.dms],
            "webhooks": [asdict(w) for w in self.webhooks.values()],
            "subscriptions": sorted(self.subscriptions),
            "follows": sorted(self.follows),
            "media": self.media,
            "last_id": self._last_id,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_file)

    def reset(self) -> None:
        self.wait_for_deliveries(5)
        with self.lock:
            self._clear()
            self._deliveries_clear()
            self._save()

    def next_id(self) -> str:
        with self.lock:
            candidate = (int(time.time() * 1000) - TWITTER_EPOCH_MS) << 22
            self._last_id = max(self._last_id + 1, candidate)
            return str(self._last_id)

    # --- identity -----------------------------------------------------------------------------------------------------

    def token_secret(self, token: str) -> str | None:
        with self.lock:
            found = self.tokens.get(token)
            return found.secret if found and not found.revoked else None

    def user_of_token(self, token: str) -> User:
        with self.lock:
            found = self.tokens.get(token)
            if not found or found.revoked or found.user_id not in self.users:
                raise Problem(401, "Unauthorized", "Unauthorized", code=89)
            return self.users[found.user_id]

    def _user(self, user_id: str, field_name: str) -> User:
        user = self.users.get(str(user_id))
        if user is None:
            raise Problem(400, "Invalid Request", f"{field_name}: no user with id {user_id}")
        return user

    # --- rate limits --------------------------------------------------------------------------------------------------

    def usage(self) -> dict[str, dict[str, int]]:
        """The calls each user made in their current 15-minute windows, by endpoint group (`dm_events`, ...)."""
        now = time.time()
        used: dict[str, dict[str, int]] = {}
        with self.lock:
            for (who, group), (start, count) in self._windows.items():
                if now - start < GENERIC_WINDOW:
                    used.setdefault(who, {})[group] = count
        return used

    def generic_limit(self, who: str, group: str) -> dict[str, str]:
        """Counts one call in a 15-minute window; the x-rate-limit-* headers, or Problem 429 past the limit."""
        limit = GENERIC_LIMITS.get(group, 300)
        now = time.time()
        with self.lock:
            start, count = self._windows.get((who, group), (now, 0))
            if now - start >= GENERIC_WINDOW:
                start, count = now, 0
            count += 1
            self._windows[(who, group)] = (start, count)
        reset = int(start + GENERIC_WINDOW)
        headers = {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(max(0, limit - count)),
            "x-rate-limit-reset": str(reset),
        }
        if count > limit:
            raise Problem(429, "Too Many Requests", "Too Many Requests", code=88, headers=headers)
        return headers

    def _dm_headers(self, user_id: str, *, count_one: bool) -> dict[str, str]:
        now = time.time()
        sends = self._dm_sends.setdefault(user_id, deque())
        while sends and now - sends[0] >= DM_WINDOW_24H:
            sends.popleft()
        in_15m = [t for t in sends if now - t < DM_WINDOW_15M]
        if len(sends) >= self.dm_limit_24h:
            reset = int(sends[-self.dm_limit_24h] + DM_WINDOW_24H) + 1
            headers = {"x-rate-limit-limit": str(self.dm_limit_15m), "x-rate-limit-remaining": "0"}
            headers["x-rate-limit-reset"] = str(reset)
            raise Problem(429, "Too Many Requests", "Too Many Requests", code=88, headers=headers)
        if len(in_15m) >= self.dm_limit_15m:
            reset = int(in_15m[-self.dm_limit_15m] + DM_WINDOW_15M) + 1
            headers = {"x-rate-limit-limit": str(self.dm_limit_15m), "x-rate-limit-remaining": "0"}
            headers["x-rate-limit-reset"] = str(reset)
            raise Problem(429, "Too Many Requests", "Too Many Requests", code=88, headers=headers)
        if count_one:
            sends.append(now)
            in_15m.append(now)
        reset = int((in_15m[0] if in_15m else now) + DM_WINDOW_15M)
        return {
            "x-rate-limit-limit": str(self.dm_limit_15m),
            "x-rate-limit-remaining": str(max(0, self.dm_limit_15m - len(in_15m))),
            "x-rate-limit-reset": str(reset),
        }

    def set_limits(self, dm15m: int | None, dm24h: int | None) -> dict[str, int]:
        with self.lock:
            if dm15m is not None:
                self.dm_limit_15m = int(dm15m)
            if dm24h is not None:
                self.dm_limit_24h = int(dm24h)
            return {"dm15m": self.dm_limit_15m, "dm24h": self.dm_limit_24h}

    # --- faults -------------------------------------------------------------------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        fault = Fault(
            method=str(spec.get("method", "*")).upper(),
            path_prefix=str(spec.get("pathPrefix", "/")),
            status=int(spec.get("status", 503)),
            times=int(spec.get("times", 1)),
            mode=str(spec.get("mode", "status")),
            seconds=float(spec.get("seconds", 30.0)),
            after_send=bool(spec.get("afterSend", False)),
            code=int(spec["code"]) if str(spec.get("code", "")).isdigit() else None,
            rate=_rate(spec.get("rate", 1.0)),
            reset=float(spec.get("resetSeconds", 60.0)),
        )
        with self.lock:
            self.faults.append(fault)
        return asdict(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method in ("*", method) and path.startswith(fault.path_prefix):
                    if fault.rate < 1 and self._dice.random() >= fault.rate:
                        continue
                    fault.times -= 1
                    fault.taken += 1
                    return fault
        return None

    def clear_faults(self) -> dict[str, Any]:
        with self.lock:
            cleared, self.faults = len(self.faults), []
        return {"cleared": cleared}

    def list_faults(self) -> list[dict[str, Any]]:
        """Every fault since the last reset, the used-up ones included, with the calls each has answered."""
        with self.lock:
            return [asdict(f) for f in self.faults]

    # --- X API: users, tokens, media ------------------------------------------------------------------------------

    def users_me(self, user: User) -> dict[str, Any]:
        return {
            "data": {
                "id": user.id,
                "name": user.name,
                "username": user.username,
                "profile_image_url": user.profile_image_url,
            }
        }

    def invalidate_token(self, token: str) -> dict[str, Any]:
        with self.lock:
            if token in self.tokens:
                self.tokens[token].revoked = True
            self._save()
        return {"access_token": token}

    def upload_media(self, user: User, data: bytes, content_type: str, category: str) -> dict[str, Any]:
        if not data:
            raise Problem(400, "Invalid Request", "media: no file was sent")
        if category and category not in ("dm_image", "dm_gif", "dm_video"):
            raise Problem(400, "Invalid Request", f"media_category: {category} is not a DM category")
        media_id = self.next_id()
        with self.lock:
            self.media[media_id] = {
                "owner": user.id,
                "size": len(data),
                "contentType": content_type,
                "expires": time.time() + MEDIA_TTL,
                "url": f"https://ton.twimg.com/dm/{media_id}.jpg",
            }
            self._save()
        return {"data": {"id": media_id, "media_key": f"3_{media_id}", "expires_after_secs": MEDIA_TTL}}

    # --- X API: DMs -------------------------------------------------------------------------------------------------

    def check_dm_request(self, sender: User, participant_id: str, body: Any) -> tuple[str, list[str]]:
        if not isinstance(body, dict):
            raise Problem(400, "Invalid Request", "The request body must be a JSON object")
        text = body.get("text")
        attachments = body.get("attachments") or []
        if text is None and not attachments:
            raise Problem(400, "Invalid Request", "One of text or attachments is required")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_DM_TEXT):
            raise Problem(400, "Invalid Request", f"text must be a string of at most {MAX_DM_TEXT} characters")
        if not isinstance(attachments, list) or len(attachments) > 1:
            raise Problem(400, "Invalid Request", "At most one attachment is allowed")
        media_ids = []
        for attachment in attachments:
            media_id = str((attachment or {}).get("media_id", ""))
            media = self.media.get(media_id)
            if media is None or media["expires"] < time.time() or media["owner"] != sender.id:
                raise Problem(400, "Invalid Request", f"attachments: media {media_id} is unknown or expired")
            media_ids.append(media_id)
        recipient = self._user(participant_id, "participant_id")
        if participant_id == sender.id:
            raise Problem(403, "Forbidden", "You cannot send messages to yourself.", code=349)
        if recipient.dm_policy == "following" and not self._accepts_dms(recipient.id, sender.id):
            raise Problem(403, "Forbidden", "You cannot send messages to this user.", code=349)
        return text or "", media_ids

    def _accepts_dms(self, recipient_id: str, sender_id: str) -> bool:
        """A `following`-only user takes DMs from accounts they follow, or have written to before (as X)."""
        if (recipient_id, sender_id) in self.follows:
            return True
        return any(d.sender_id == recipient_id and d.recipient_id == sender_id for d in self.dms)

    def send_dm(self, sender: User, participant_id: str, body: Any) -> tuple[dict[str, Any], dict[str, str]]:
        with self.lock:
            text, media_ids = self.check_dm_request(sender, participant_id, body)
            headers = self._dm_headers(sender.id, count_one=True)
            dm = DM(
                id=self.next_id(),
                sender_id=sender.id,
                recipient_id=participant_id,
                text=text,
                created_ms=int(time.time() * 1000),
                media_ids=media_ids,
                source_app_id=self.app_id,
            )
            self.dms.append(dm)
            self._save()
            targets = self._webhook_targets([sender.id, participant_id])
            payloads = [(url, uid, self._dm_payload(uid, dm)) for url, uid in targets]
        for url, uid, payload in payloads:
            self._enqueue(url, uid, payload)
        low, high = sorted([sender.id, participant_id], key=int)
        return {"data": {"dm_conversation_id": f"{low}-{high}", "dm_event_id": dm.id}}, headers

    def dm_events(
        self,
        user: User,
        participant_id: str,
        max_results: int = 100,
        fields: list[str] | None = None,
        pagination_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the conversation's DM events (xsandbox/lookup.py: X's fields, paging and reach)."""
        with self.lock:
            pair = {user.id, str(participant_id)}
            events = [d for d in self.dms if {d.sender_id, d.recipient_id} == pair]
        ends = (user.id, str(participant_id))
        return lookup.page(events, ends, fields or [], max_results, pagination_token)

    # --- X API: webhooks ------------------------------------------------------------------------------------------

    def register_webhook(self, url: str, *, check: bool = True) -> dict[str, Any]:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Problem(400, "Invalid Request", "url must be an http(s) URL")
        with self.lock:
            if any(w.url == url for w in self.webhooks.values()):
                raise Problem(409, "Conflict", "A webhook with this URL is already registered", code=214)
            if len(self.webhooks) >= 1 and check:
                raise Problem(403, "Forbidden", "Too many resources already created.", code=214)
        if check:
            passed, reason = webhooks.crc_check(url, self.consumer_secret)
            if not passed:
                raise Problem(400, "Invalid Request", f"Webhook URL failed the CRC check: {reason}", code=214)
        webhook = Webhook(id=self.next_id(), url=url, valid=True, created_at=iso_ms(int(time.time() * 1000)))
        with self.lock:
            self.webhooks[webhook.id] = webhook
            self._save()
        return {"data": asdict(webhook)}

    def list_webhooks(self) -> dict[str, Any]:
        with self.lock:
            data = [asdict(w) for w in self.webhooks.values()]
        return {"data": data, "meta": {"result_count": len(data)}}

    def subscribe(self, webhook_id: str, user: User) -> dict[str, Any]:
        with self.lock:
            if webhook_id not in self.webhooks:
                raise Problem(404, "Not Found Error", f"webhook {webhook_id} not found")
            self.subscriptions.add((webhook_id, user.id))
            self._save()
        return {"data": {"subscribed": True}}

    def unsubscribe(self, webhook_id: str, user_id: str) -> dict[str, Any]:
        with self.lock:
            if webhook_id not in self.webhooks:
                raise Problem(404, "Not Found Error", f"webhook {webhook_id} not found")
            self.subscriptions.discard((webhook_id, user_id))
            self._save()
        return {"data": {"subscribed": False}}

    # --- webhook delivery -------------------------------------------------------------------------------------------

    def _webhook_targets(self, user_ids: list[str]) -> list[tuple[str, str]]:
        """(url, for_user_id) for each subscription of the users involved, each pair once."""
        targets: list[tuple[str, str]] = []
        for uid in dict.fromkeys(user_ids):
            for webhook_id, sub_uid in sorted(self.subscriptions):
                if sub_uid == uid and webhook_id in self.webhooks:
                    targets.append((self.webhooks[webhook_id].url, uid))
        return targets

    def _dm_payload(self, for_user_id: str, dm: DM) -> dict[str, Any]:
        media_urls = {m: self.media.get(m, {}).get("url", "") for m in dm.media_ids}
        users = {
            uid: webhooks.user_object(self.users[uid]) for uid in (dm.sender_id, dm.recipient_id) if uid in self.users
        }
        payload: dict[str, Any] = {
            "for_user_id": for_user_id,
            "direct_message_events": [webhooks.dm_event(dm, media_urls)],
            "users": users,
        }
        if dm.source_app_id:
            payload["apps"] = {dm.source_app_id: {"id": dm.source_app_id, "name": "mktx", "url": "https://mktx.local"}}
        return payload
