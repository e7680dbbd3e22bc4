from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _campaigns_using(segment: Any) -> dict[str, list[str]]:
    from campaigns.models import ACTIVE_STATUSES, Campaign

    ids = Campaign.objects.filter(segments=segment, status__in=ACTIVE_STATUSES).values_list("pk", flat=True)
    return {"campaignIds": [str(pk) for pk in ids]}


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contacts.segment_users import segment_users_register

        segment_users_register("campaigns", _campaigns_using)
