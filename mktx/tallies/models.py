"""The rollup: counts of what happened, per account, metric and quarter-hour (UTC), kept by the services that write
the rows they count, in the same transaction (mktx/tallies/services.py). Every time zone in use today is a whole
number of quarter-hours from UTC, so a local day, week or month is a sum of whole buckets.

A write adds a row (`merged` false) and never updates one: writers never wait on each other for a hot counter.
`tallies_merge` (every minute) folds a bucket's rows into one; a sum reads the same before and after."""

from __future__ import annotations

from django.db import models

from mktx.accounts.models import Account


class Tally(models.Model):
    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.CharField(max_length=40)
    bucket = models.DateTimeField(help_text="The quarter-hour (UTC) counted, by its start.")
    n = models.BigIntegerField(help_text="What it adds (a move from one bucket to another adds -1 and +1).")
    merged = models.BooleanField(default=False, help_text="One bucket's rows folded into this one.")

    class Meta:
        verbose_name_plural = "tallies"
        indexes = [
            models.Index(fields=["account", "metric", "bucket"], name="tally_read", include=["n"]),
            models.Index(fields=["account"], condition=models.Q(merged=False), name="tally_unmerged"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.bucket:%Y-%m-%d %H:%M} {self.n:+d}"


class TallyState(models.Model):
    """One row: whether the rollup was built from the rows (until then the reports read the rows), and when it was
    last built and merged: its freshness."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    built_at = models.DateTimeField(null=True, blank=True, help_text="Last built from the rows.")
    merged_at = models.DateTimeField(null=True, blank=True, help_text="Last merged.")

    def __str__(self) -> str:
        return "rollup state"
