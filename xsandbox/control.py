"""The control surface: what a test or a person does to play X's users (create them, DM, follow, read, revoke)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from xsandbox import links, webhooks
from xsandbox.model import DM, DM_POLICIES, MAX_DM_TEXT, Delivery, Problem, Token, User, Webhook, iso_ms


class ControlMixin:
    """Part of Sandbox (xsandbox.core), which holds the state and the delivery machinery used here."""

    lock: threading.RLock
    users: dict[str, User]
    tokens: dict[str, Token]
    dms: list[DM]
    webhooks: dict[str, Webhook]
    subscriptions: set[tuple[str, str]]
    follows: set[tuple[str, str]]
    deliveries: list[Delivery]
    media: dict[str, dict[str, Any]]
    app_id: str

    if TYPE_CHECKING:

        def next_id(self) -> str: ...
        def _save(self) -> None: ...
        def _user(self, user_id: str, field_name: str) -> User: ...
        def _webhook_targets(self, user_ids: list[str]) -> list[tuple[str, str]]: ...
        def _dm_payload(self, for_user_id: str, dm: DM) -> dict[str, Any]: ...
        def _deliver_now(
            self, url: str, for_user_id: str, payload: dict[str, Any], kind: str | None = None
        ) -> Delivery: ...

    def create_user(self, username: str, name: str, dm_policy: str = "everyone") -> dict[str, Any]:
        if not isinstance(username, str) or not username.strip():
            raise Problem(400, "Invalid Request", "username is required")
        dm_policy = _policy(dm_policy)
        with self.lock:
            existing = next((u for u in self.users.values() if u.username == username.strip().lstrip("@")), None)
            if existing is not None:  # usernames are unique at X: answer the same user, with a working token
                return self.issue_token(existing.id) | {"name": existing.name}
            user = User(
                id=self.next_id()[-10:].lstrip("0") or "1",
                username=username.strip().lstrip("@"),
                name=(name or username).strip(),
                profile_image_url=f"https://pbs.twimg.com/profile_images/{username.strip()}_normal.jpg",
                created_ms=int(time.time() * 1000),
                dm_policy=dm_policy,
            )
            while user.id in self.users:
                user.id = str(int(user.id) + 1)
            token = Token(
                token=f"{user.id}-{secrets.token_urlsafe(24)}", secret=secrets.token_urlsafe(32), user_id=user.id
            )
            self.users[user.id] = user
            self.tokens[token.token] = token
            self._save()
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "dmPolicy": user.dm_policy,
            "oauthToken": token.token,
            "oauthTokenSecret": token.secret,
        }

    def user_settings(self, user_id: str, dm_policy: Any) -> dict[str, Any]:
        """A user's DM setting: `everyone`, or `following` (only accounts they follow, or have written to)."""
        with self.lock:
            user = self._user(user_id, "userId")
            user.dm_policy = _policy(dm_policy)
            self._save()
            return {"id": user.id, "dmPolicy": user.dm_policy}

    def issue_token(self, user_id: str) -> dict[str, Any]:
        """A new access token for an existing user, as when the user authorises the app again."""
        with self.lock:
            user = self._user(user_id, "userId")
            token = Token(
                token=f"{user.id}-{secrets.token_urlsafe(24)}", secret=secrets.token_urlsafe(32), user_id=user.id
            )
            self.tokens[token.token] = token
            self._save()
        return {"id": user.id, "username": user.username, "oauthToken": token.token, "oauthTokenSecret": token.secret}

    def control_dm(
        self, sender_id: str, recipient_id: str, text: str, quick_reply: dict[str, Any] | None
    ) -> dict[str, Any]:
        with self.lock:
            self._user(sender_id, "senderId")
            self._user(recipient_id, "recipientId")
            if not isinstance(text, str) or not text or len(text) > MAX_DM_TEXT:
                raise Problem(400, "Invalid Request", f"text must be 1 to {MAX_DM_TEXT} characters")
            dm = DM(
                id=self.next_id(),
                sender_id=str(sender_id),
                recipient_id=str(recipient_id),
                text=text,
                created_ms=int(time.time() * 1000),
                quick_reply_response=quick_reply,
            )
            self.dms.append(dm)
            self._save()
            targets = self._webhook_targets([dm.sender_id, dm.recipient_id])
            payloads = [(url, uid, self._dm_payload(uid, dm)) for url, uid in targets]
        deliveries = [self._deliver_now(url, uid, payload) for url, uid, payload in payloads]
        return {"eventId": dm.id, "deliveries": [{"url": d.url, "status": d.status} for d in deliveries]}

    def control_follow(self, source_id: str, target_id: str, kind: str) -> dict[str, Any]:
        with self.lock:
            source, target = self._user(source_id, "sourceId"), self._user(target_id, "targetId")
            now = str(int(time.time() * 1000))
            targets = self._webhook_targets([source.id, target.id])
            event = {
                "type": kind,
                "created_timestamp": now,
                "target": webhooks.user_object(target),
                "source": webhooks.user_object(source),
            }
            payloads = [(url, uid, {"for_user_id": uid, "follow_events": [event]}) for url, uid in targets]
            if kind == "follow":
                self.follows.add((source.id, target.id))
            else:
                self.follows.discard((source.id, target.id))
            self._save()
        deliveries = [self._deliver_now(url, uid, payload) for url, uid, payload in payloads]
        return {"deliveries": [{"url": d.url, "status": d.status} for d in deliveries]}

    def control_read(self, reader_id: str, other_id: str, last_read_event_id: str) -> dict[str, Any]:
        with self.lock:
            reader, other = self._user(reader_id, "readerId"), self._user(other_id, "otherId")
            event = {
                "created_timestamp": str(int(time.time() * 1000)),
                "sender_id": reader.id,
                "target": {"recipient_id": other.id},
                "last_read_event_id": str(last_read_event_id),
            }
            users = {u.id: webhooks.user_object(u) for u in (reader, other)}
            targets = self._webhook_targets([reader.id, other.id])
            payloads = [
                (url, uid, {"for_user_id": uid, "direct_message_mark_read_events": [event], "users": users})
                for url, uid in targets
            ]
        deliveries = [self._deliver_now(url, uid, payload) for url, uid, payload in payloads]
        return {"deliveries": [{"url": d.url, "status": d.status} for d in deliveries]}

    def control_typing(self, sender_id: str, recipient_id: str) -> dict[str, Any]:
        with self.lock:
            sender, recipient = self._user(sender_id, "senderId"), self._user(recipient_id, "recipientId")
            event = {
                "created_timestamp": str(int(time.time() * 1000)),
                "sender_id": sender.id,
                "target": {"recipient_id": recipient.id},
            }
            users = {u.id: webhooks.user_object(u) for u in (sender, recipient)}
            targets = self._webhook_targets([sender.id, recipient.id])
            payloads = [
                (url, uid, {"for_user_id": uid, "direct_message_indicate_typing_events": [event], "users": users})
                for url, uid in targets
            ]
        deliveries = [self._deliver_now(url, uid, payload) for url, uid, payload in payloads]
        return {"deliveries": [{"url": d.url, "status": d.status} for d in deliveries]}

    def control_revoke(self, user_id: str) -> dict[str, Any]:
        with self.lock:
            user = self._user(user_id, "userId")
            for token in self.tokens.values():
                if token.user_id == user.id:
                    token.revoked = True
            urls = sorted(
                {self.webhooks[w].url for w, uid in self.subscriptions if uid == user.id and w in self.webhooks}
            )
            self.subscriptions = {(w, uid) for w, uid in self.subscriptions if uid != user.id}
            self._save()
            payload = {
                "user_event": {
                    "revoke": {
                        "date_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z",
                        "target": {"app_id": self.app_id},
                        "source": {"user_id": user.id},
                    }
                }
            }
        deliveries = [self._deliver_now(url, "", payload, kind="user_event") for url in urls]
        return {"deliveries": [{"url": d.url, "status": d.status} for d in deliveries]}

    def list_dms(self, sender_id: str | None, recipient_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            found = [
                d
                for d in self.dms
                if (not sender_id or d.sender_id == sender_id) and (not recipient_id or d.recipient_id == recipient_id)
            ]
        found.sort(key=lambda d: int(d.id))
        return [
            {
                "id": d.id,
                "senderId": d.sender_id,
                "recipientId": d.recipient_id,
                "text": d.text,
                "xText": d.x_text or d.text,
                "entities": {"urls": links.shown(d.urls)},
                "createdAt": iso_ms(d.created_ms),
                "mediaIds": d.media_ids,
            }
            for d in found
        ]

    def list_media(self) -> list[dict[str, Any]]:
        """Every upload, oldest first: how many times the service fetched and uploaded an image."""
        with self.lock:
            items = sorted(self.media.items(), key=lambda item: int(item[0]))
        return [
            {
                "id": m,
                "ownerId": v["owner"],
                "size": v["size"],
                "contentType": v["contentType"],
                "expired": v["expires"] < time.time(),
            }
            for m, v in items
        ]

    def expire_media(self, media_id: str | None) -> dict[str, Any]:
        """As X does after 24 hours: the media id (or every one) is refused by a DM from now on."""
        with self.lock:
            expired = [m for m in self.media if media_id in (None, "", m)]
            for m in expired:
                self.media[m]["expires"] = 0
            self._save()
        return {"expired": expired}

    def list_deliveries(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(d) for d in self.deliveries]


def _policy(value: Any) -> str:
    if value not in DM_POLICIES:
        raise Problem(400, "Invalid Request", f"dmPolicy must be one of {', '.join(DM_POLICIES)}")
    return str(value)
