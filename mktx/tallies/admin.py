"""The rollup in the back office: its counts (read-only: the services write them) and its freshness."""

from __future__ import annotations

from django.contrib import admin

from mktx.service_admin import ViewOnlyAdmin
from mktx.tallies.models import Tally, TallyState


@admin.register(Tally)
class TallyAdmin(ViewOnlyAdmin):
    list_display = ("bucket", "metric", "n", "merged", "account")
    list_filter = ("metric", "merged")
    list_select_related = ("account",)
    date_hierarchy = "bucket"
    show_full_result_count = False  # the table grows with every quarter-hour


@admin.register(TallyState)
class TallyStateAdmin(ViewOnlyAdmin):
    list_display = ("__str__", "built_at", "merged_at")
