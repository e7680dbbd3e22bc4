from __future__ import annotations

from django.contrib import admin

from campaigns.models import Campaign, Template
from campaigns.templating import render
from mktx.api.errors import ApiError


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "type", "merchant", "updated_at")
    list_filter = ("type", "merchant")
    list_select_related = ("merchant",)
    search_fields = ("name", "content")
    readonly_fields = ("id", "merchant", "rendered_preview", "created_at", "updated_at")

    @admin.display(description="preview (defaults, placeholders without one shown as [name])")
    def rendered_preview(self, template: Template) -> str:
        values = {name: f"[{name}]" for name in template.variables}
        values |= {"contact.displayName": "[contact.displayName]", "contact.username": "[contact.username]"}
        try:
            return render(template, variables=values).text
        except ApiError as exc:
            return f"cannot render: {exc.message}"


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "type", "status", "merchant", "template", "created_at")
    list_filter = ("status", "type", "merchant")
    list_select_related = ("merchant", "template")
    search_fields = ("name",)
    readonly_fields = ("id", "merchant", "created_at", "updated_at")
    filter_horizontal = ("segments",)
