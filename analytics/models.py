"""Analytics owns no table. `Dashboard` is a proxy with no rows of its own: it gives the back office its analytics
page (analytics/admin.py) a place in the admin index and a permission of its own."""

from __future__ import annotations

from contacts.models import ConversationEvent


class Dashboard(ConversationEvent):
    class Meta:
        proxy = True
        verbose_name = "analytics dashboard"
        verbose_name_plural = "analytics dashboard"
