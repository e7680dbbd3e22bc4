"""A merchant's AI settings (CONTRACT.md "AI chatbot"): read with their defaults until first written, changed field by
field. The order lookup's secret is stored encrypted (mktx.accounts.crypto) and never leaves this module but to sign
a lookup: no answer, log line or admin page shows it, only whether one is set."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from chatbot.models import AISettings
from mktx.accounts.crypto import decrypt, encrypt
from mktx.memo import memoized

logger = logging.getLogger("mktx.chatbot")

# what PUT may change, as the model names them; the secret apart (it is stored encrypted under another name)
SETTINGS_FIELDS = (
    "enabled",
    "model",
    "temperature",
    "max_tokens",
    "auto_escalation_threshold",
    "system_prompt",
    "engine",
    "auto_reply",
    "handoff_message",
    "session_timeout_minutes",
    "escalation_assignment",
    "order_lookup_url",
)
SECRET_FIELD = "order_lookup_secret"  # noqa: S105 - the field's name, not a secret

# the limits of CONTRACT.md, shared by the API's serializer and the admin's form
MAX_MODEL = 100
TEMPERATURE = (0.0, 2.0)
MAX_TOKENS = (1, 4_000)
THRESHOLD = (0.0, 1.0)
MAX_SYSTEM_PROMPT = 10_000
MAX_HANDOFF = 1_000
SESSION_TIMEOUT_MINUTES = (1, 1_440)
MAX_LOOKUP_URL = 500
MAX_LOOKUP_SECRET = 200


def ai_settings_of(*, merchant_id: uuid.UUID) -> AISettings:
    """The merchant's settings; an unsaved row of defaults when none is stored (reading writes nothing). Read once
    per batch of inbound events (mktx/memo.py)."""

    def read() -> AISettings:
        found = AISettings.objects.filter(merchant_id=merchant_id).first()
        return found if found is not None else AISettings(merchant_id=merchant_id)

    return memoized(("ai_settings", str(merchant_id)), read)


@transaction.atomic
def ai_settings_update(*, merchant_id: uuid.UUID, changes: Mapping[str, Any]) -> AISettings:
    """Changes the fields given (model names; `order_lookup_secret` in plain text, "" clears it) and keeps the
    others. The first write stores the row."""
    unknown = set(changes) - {*SETTINGS_FIELDS, SECRET_FIELD}
    if unknown:
        raise ValueError(f"not AI settings: {sorted(unknown)}")
    row, _ = AISettings.objects.select_for_update().get_or_create(merchant_id=merchant_id)
    fields = [name for name in SETTINGS_FIELDS if name in changes]
    for name in fields:
        setattr(row, name, changes[name])
    if SECRET_FIELD in changes:
        row.order_lookup_secret_encrypted = encrypt(str(changes[SECRET_FIELD] or ""))
        fields.append("order_lookup_secret_encrypted")
    row.save(update_fields=[*fields, "updated_at"])
    # names only: a value may be the secret
    logger.info("AI settings of merchant %s changed: %s", merchant_id, ", ".join(sorted(changes)) or "nothing")
    return row


def order_lookup_secret(settings: AISettings) -> str:
    """The secret the order lookup signs with; "" when none is set. Raises UndecryptableToken."""
    return decrypt(settings.order_lookup_secret_encrypted)


def order_lookup_secret_set(settings: AISettings) -> bool:
    return bool(settings.order_lookup_secret_encrypted)
