"""X's DM event lookup, `GET /2/dm_conversations/with/{participant_id}/dm_events`, as strict as X: only `id`,
`event_type` and `text` unless `dm_event.fields` names more; `max_results` 1-100 (default 100); pages newest first,
`meta.next_token` to pass as `pagination_token` for the next one; events of the last 30 days only."""

from __future__ import annotations

import base64
import time
from typing import Any

from xsandbox.model import DM, Problem, iso_ms

FIELDS = ("created_at", "sender_id", "dm_conversation_id", "attachments", "participant_ids", "referenced_tweets")
DEFAULT = ("id", "event_type", "text")
REACH_MS = 30 * 24 * 3600 * 1000


def requested_fields(raw: str | None) -> list[str]:
    names = [name.strip() for name in (raw or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in (*FIELDS, *DEFAULT)]
    if unknown:
        allowed = ",".join(sorted((*FIELDS, *DEFAULT)))
        raise Problem(
            400,
            "Invalid Request",
            f"The `dm_event.fields` query parameter value [{unknown[0]}] is not one of [{allowed}]",
        )
    return names


def page_size(raw: str | None) -> int:
    if raw is None:
        return 100
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise Problem(
            400, "Invalid Request", f"The `max_results` query parameter value [{raw}] is not between 1 and 100"
        )
    return int(raw)


def _token(dm_id: str) -> str:
    return base64.urlsafe_b64encode(f"before:{dm_id}".encode()).decode().rstrip("=")


def _before(token: str | None) -> int | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if decoded.startswith("before:") and decoded[7:].isdigit():
            return int(decoded[7:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise Problem(400, "Invalid Request", "The `pagination_token` query parameter value is not valid")


def page(
    events: list[DM],
    pair: tuple[str, str],
    fields: list[str],
    max_results: int,
    pagination_token: str | None,
) -> dict[str, Any]:
    """One page of the conversation's events, newest first."""
    now_ms = int(time.time() * 1000)
    before = _before(pagination_token)
    reachable = sorted(
        (d for d in events if now_ms - d.created_ms <= REACH_MS and (before is None or int(d.id) < before)),
        key=lambda d: int(d.id),
        reverse=True,
    )
    shown, rest = reachable[:max_results], reachable[max_results:]
    low, high = sorted(pair, key=int)
    data = []
    for d in shown:
        event: dict[str, Any] = {"id": d.id, "event_type": "MessageCreate", "text": d.x_text or d.text}
        extra: dict[str, Any] = {
            "created_at": iso_ms(d.created_ms),
            "sender_id": d.sender_id,
            "dm_conversation_id": f"{low}-{high}",
            "participant_ids": [low, high],
        }
        if d.media_ids:
            extra["attachments"] = {"media_keys": [f"3_{m}" for m in d.media_ids]}
        event.update({name: extra[name] for name in fields if name in extra})
        data.append(event)
    meta: dict[str, Any] = {"result_count": len(data)}
    if rest and shown:
        meta["next_token"] = _token(shown[-1].id)
    return {"data": data, "meta": meta} if data else {"meta": meta}
