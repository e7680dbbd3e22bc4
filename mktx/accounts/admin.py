from django.contrib import admin
from django.db import models

from mktx.accounts.models import Account


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("username", "display_name", "merchant", "twitter_user_id", "status", "connected_at")
    list_filter = ("status", "auto_reply_enabled", "merchant")
    list_select_related = ("merchant",)
    search_fields = ("username", "display_name", "twitter_user_id", "merchant__name")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = (
        "id",
        "merchant",
        "twitter_user_id",
        "webhook_id",
        "connected_at",
        "disconnected_at",
        "created_at",
        "updated_at",
    )
