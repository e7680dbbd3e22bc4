"""Tracked links: each URL of a campaign message becomes `MKTX_PUBLIC_URL/l/<token>`, one token per delivery and
URL, so a click is attributed to its recipient; `/l/<token>` records it and redirects to the original."""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Delivery, TrackedLink

URL = re.compile(r"https?://[^\s<>\"']+")
TRAILING = ".,;:!?)]}'\""


def _link_for(delivery: Delivery, url: str) -> TrackedLink:
    existing = TrackedLink.objects.filter(delivery=delivery, url=url).first()
    if existing is not None:  # a retry of the same delivery keeps its tokens, so its text is the same
        return existing
    for _ in range(3):
        try:
            with transaction.atomic():
                return TrackedLink.objects.create(delivery=delivery, url=url, token=secrets.token_urlsafe(9))
        except IntegrityError:  # a token collision (or a concurrent create): look again
            existing = TrackedLink.objects.filter(delivery=delivery, url=url).first()
            if existing is not None:
                return existing
    raise RuntimeError("could not make a unique link token")


def link_click(token: str) -> str | None:
    """Record a click; the original URL, or None for an unknown token. The delivery's first click is kept."""
    link = TrackedLink.objects.filter(token=token).only("id", "url", "delivery_id").first()
    if link is None:
        return None
    now = timezone.now()
    TrackedLink.objects.filter(pk=link.pk).update(clicks=F("clicks") + 1)
    TrackedLink.objects.filter(pk=link.pk, first_clicked_at__isnull=True).update(first_clicked_at=now)
    Delivery.objects.filter(pk=link.delivery_id, clicked_at__isnull=True).update(clicked_at=now)
    return link.url


def links_track_many(texts: dict[int, str]) -> dict[int, str]:
    """Each http(s) URL of each text (delivery id -> text) replaced by the delivery's tracked link for it, in two
    queries: the links a retry already has are kept (its text stays the same), the others are inserted at once."""
    base = settings.MKTX_PUBLIC_URL.rstrip("/")
    own_prefix = f"{base}/l/"
    wanted: dict[tuple[int, str], None] = {}
    for delivery_id, text in texts.items():
        for match in URL.finditer(text):
            stripped = match.group(0).rstrip(TRAILING)
            if stripped and not stripped.startswith(own_prefix) and len(stripped) <= 2000:
                wanted[(delivery_id, stripped)] = None
    if not wanted:
        return texts
    ids = list(texts)
    TrackedLink.objects.bulk_create(
        [TrackedLink(delivery_id=d, url=u, token=secrets.token_urlsafe(9)) for d, u in wanted],
        ignore_conflicts=True,  # a retry's links exist already (and a token collision is made again below)
    )
    tokens = {
        (d, u): t
        for d, u, t in TrackedLink.objects.filter(delivery_id__in=ids).values_list("delivery_id", "url", "token")
    }
    for key in wanted:
        if key not in tokens:  # a token collision dropped it: one at a time
            tokens[key] = _link_for(Delivery(pk=key[0]), key[1]).token

    def tracked(delivery_id: int, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            url = match.group(0)
            stripped = url.rstrip(TRAILING)
            token = tokens.get((delivery_id, stripped))
            return f"{own_prefix}{token}{url[len(stripped) :]}" if token else url

        return URL.sub(replace, text)

    return {delivery_id: tracked(delivery_id, text) for delivery_id, text in texts.items()}
