"""Trigram indexes for the contact search on PostgreSQL (`icontains` compiles to UPPER(col) LIKE UPPER(...), so the
indexes are on UPPER(col)). SQLite has no such index type: nothing to do there."""

from django.db import migrations

INDEXES = {
    "contact_username_trgm": "username",
    "contact_display_name_trgm": "display_name",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {name} ON contacts_contact USING gin (UPPER("{column}"::text) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
