"""Newest-first indexes matching the contact list's order (last interaction first, contacts never met last)."""

from django.db import migrations

INDEXES = {"contact_merchant_recent": "merchant_id", "contact_account_recent": "account_id"}


def create(apps, schema_editor):
    nulls_last = " NULLS LAST" if schema_editor.connection.vendor == "postgresql" else ""
    for name, column in INDEXES.items():
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX {name} ON contacts_contact ({column}, last_interaction_at DESC{nulls_last}, created_at DESC)"
        )


def drop(apps, schema_editor):
    for name, column in INDEXES.items():
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON contacts_contact ({column}, last_interaction_at DESC)")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0003_contact_tag_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="contact", name="contact_merchant_recent"),
                migrations.RemoveIndex(model_name="contact", name="contact_account_recent"),
            ],
            database_operations=[migrations.RunPython(create, drop)],
        )
    ]
