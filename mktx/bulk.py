"""Set-based writes the ORM has no form for: many rows updated with a value of their own in one statement.

`Model.objects.bulk_update` builds a `CASE WHEN pk = ... THEN ...` per row and column, which costs more Python
than the DM it records; the hot paths (the campaign sender's batch) update from a VALUES list instead, one
statement on PostgreSQL and SQLite (3.33+) alike:

    WITH v(k, a, b) AS (VALUES (%s, %s, %s), ...) UPDATE <table> AS t SET ... FROM v WHERE t.<pk> = v.k ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def values_update(
    model: type[Model],
    columns: Sequence[tuple[str, Field[Any, Any]]],
    rows: Sequence[Sequence[Any]],
    *,
    assignments: str,
    where: str = "",
    where_params: Sequence[Any] = (),
    returning: bool = False,
) -> list[Any]:
    """UPDATE `model`'s table from `rows`, joined on its primary key: `columns` names and types the VALUES
    columns (the first is the key), `assignments` is the SET clause over `t` (the row) and `v` (its values),
    `where` more conditions (with `where_params`). Answers the updated rows' keys when `returning` (else []).
    Values are adapted by their column's field and, on PostgreSQL, cast to its type."""
    if not rows:
        return []
    cast = connection.vendor == "postgresql"
    types = [field.cast_db_type(connection) for _, field in columns]  # type: ignore[attr-defined]
    placeholder = ", ".join(f"CAST(%s AS {t})" if cast else "%s" for t in types)
    params: list[Any] = []
    for row in rows:
        params += [field.get_db_prep_value(value, connection) for (_, field), value in zip(columns, row, strict=True)]
    qn = connection.ops.quote_name
    pk = qn(model._meta.pk.column)
    names = ", ".join(qn(name) for name, _ in columns)
    # identifiers quoted; `assignments` and `where` are the caller's code; every value is a parameter
    sql = (
        f"WITH v({names}) AS (VALUES {', '.join(f'({placeholder})' for _ in rows)}) "  # noqa: S608
        f"UPDATE {qn(model._meta.db_table)} AS t SET {assignments} FROM v "
        f"WHERE t.{pk} = v.{qn(columns[0][0])}{f' AND ({where})' if where else ''}"
        f"{f' RETURNING {pk}' if returning else ''}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *where_params])
        if not returning:
            return []
        key = columns[0][1]
        return [key.to_python(row[0]) for row in cursor.fetchall()]
