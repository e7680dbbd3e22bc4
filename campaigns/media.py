"""A campaign run's card image, fetched and uploaded to X once per sending account and reused for every recipient
of the run (the outbound path uploads again, once, when X refuses the stored media id: X keeps one 24 hours)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from campaigns.models import CampaignRun


class RunMedia:
    """`UploadedMedia` (contacts.services.outbound) kept on the run: `{account id: {"url", "mediaId"}}`."""

    def __init__(self, run: CampaignRun) -> None:
        self.run = run

    def get(self, account_id: Any, url: str) -> str | None:
        entry = (self.run.media or {}).get(str(account_id))
        if isinstance(entry, dict) and entry.get("url") == url and entry.get("mediaId"):
            return str(entry["mediaId"])
        return None

    def put(self, account_id: Any, url: str, media_id: str) -> None:
        # the row is locked while its map is rewritten: two sender lanes sending from two accounts keep both ids
        with transaction.atomic():
            media = CampaignRun.objects.select_for_update().filter(pk=self.run.pk).values_list("media", flat=True)
            current = dict(next(iter(media), None) or {})
            current[str(account_id)] = {"url": url, "mediaId": media_id}
            CampaignRun.objects.filter(pk=self.run.pk).update(media=current)
        self.run.media = current
