"""The schedule leaves its wire format: startAt, endAt, recurrence and the send window become columns."""

from datetime import date, datetime

from django.db import migrations, models


def _when(value):
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def schedule_to_columns(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    for campaign in Campaign.objects.exclude(schedule={}).iterator():
        schedule = campaign.schedule or {}
        recurrence = schedule.get("recurrence") or {}
        until = recurrence.get("until")
        Campaign.objects.filter(pk=campaign.pk).update(
            start_at=_when(schedule.get("startAt")),
            end_at=_when(schedule.get("endAt")),
            recurrence_frequency=recurrence.get("frequency") or "",
            recurrence_interval=recurrence.get("interval") or 1,
            recurrence_until=date.fromisoformat(until) if until else None,
        )


def columns_to_schedule(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    for campaign in Campaign.objects.iterator():
        recurrence = None
        if campaign.recurrence_frequency:
            recurrence = {
                "frequency": campaign.recurrence_frequency,
                "interval": campaign.recurrence_interval,
                "until": campaign.recurrence_until.isoformat() if campaign.recurrence_until else None,
            }
        iso = lambda v: v.isoformat().replace("+00:00", "Z") if v else None  # noqa: E731
        Campaign.objects.filter(pk=campaign.pk).update(
            schedule={"startAt": iso(campaign.start_at), "endAt": iso(campaign.end_at), "recurrence": recurrence}
        )


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0005_skipped_occurrences_run_media")]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="start_at",
            field=models.DateTimeField(blank=True, null=True, help_text="startAt: the first occurrence; empty: now."),
        ),
        migrations.AddField(
            model_name="campaign",
            name="end_at",
            field=models.DateTimeField(blank=True, null=True, help_text="endAt: what is not sent by then is skipped."),
        ),
        migrations.AddField(
            model_name="campaign",
            name="recurrence_frequency",
            field=models.CharField(
                blank=True,
                default="",
                max_length=10,
                choices=[("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly")],
            ),
        ),
        migrations.AddField(
            model_name="campaign", name="recurrence_interval", field=models.PositiveSmallIntegerField(default=1)
        ),
        migrations.AddField(
            model_name="campaign", name="recurrence_until", field=models.DateField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="campaign",
            name="send_window_start",
            field=models.TimeField(blank=True, null=True, help_text="DMs go out only from this local time"),
        ),
        migrations.AddField(
            model_name="campaign",
            name="send_window_end",
            field=models.TimeField(blank=True, null=True, help_text="... until this one (account's time zone)"),
        ),
        migrations.AddField(
            model_name="campaign",
            name="send_window_days",
            field=models.JSONField(
                blank=True, default=list, help_text="Weekdays of the send window (0 = Monday); empty: every day."
            ),
        ),
        migrations.RunPython(schedule_to_columns, columns_to_schedule),
        migrations.RemoveField(model_name="campaign", name="schedule"),
        migrations.AddField(
            model_name="accountpacing",
            name="holder",
            field=models.CharField(blank=True, default="", max_length=32, help_text="The lane sending now, if any."),
        ),
        migrations.AddField(
            model_name="accountpacing",
            name="x_limit",
            field=models.PositiveIntegerField(
                blank=True, null=True, help_text="x-rate-limit-limit of the last DM send"
            ),
        ),
        migrations.AddField(
            model_name="accountpacing",
            name="x_remaining",
            field=models.PositiveIntegerField(blank=True, null=True, help_text="x-rate-limit-remaining"),
        ),
        migrations.AddField(
            model_name="accountpacing",
            name="x_reset_at",
            field=models.DateTimeField(blank=True, null=True, help_text="x-rate-limit-reset"),
        ),
        migrations.AddField(
            model_name="accountpacing",
            name="reason",
            field=models.CharField(blank=True, default="", max_length=40, help_text="What sets next_send_at"),
        ),
    ]
