"""Set-based writes the ORM has no form for: many rows updated with a value of their own in one statement.

`Model.objects.bulk_update` builds a `CASE WHEN pk = ... THEN ...` per row and column, which costs more Python
than the DM it records; the hot paths (the campaign sender's batch, the flow resumer's) update from a table of the
rows instead, in one statement:

    UPDATE <table> AS t SET ... FROM unnest(%s::uuid[], %s::text[], ...) AS v(k, a, ...) WHERE t.<pk> = v.k ...

on PostgreSQL (one array per column: the statement's text does not grow with the rows), and the same from a
`(VALUES (...), ...) AS v(...)` list on SQLite (3.33+).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def _column_arrays(columns: Sequence[tuple[str, Field[Any, Any]]], rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """One list per column of `rows`' values, adapted by the column's field."""
    arrays: list[list[Any]] = [[] for _ in columns]
    for row in rows:
        for (_, field), array, value in zip(columns, arrays, row, strict=True):
            array.append(field.get_db_prep_value(value, connection))
    return arrays


def _source(
    columns: Sequence[tuple[str, Field[Any, Any]]], rows: Sequence[Sequence[Any]]
) -> tuple[str, str, list[Any]]:
    """The rows as a table `v`: (a WITH clause to put first, the FROM item, the parameters). PostgreSQL: `unnest` of
    one array per column, cast to its type (one parameter per column whatever the row count, where a VALUES list
    has one per value for psycopg to quote and PostgreSQL to parse); SQLite: a VALUES list in a WITH clause."""
    qn = connection.ops.quote_name
    names = ", ".join(qn(name) for name, _ in columns)
    if connection.vendor == "postgresql":
        types = [field.cast_db_type(connection) for _, field in columns]  # type: ignore[attr-defined]
        arrays = ", ".join(f"CAST(%s AS {t}[])" for t in types)
        return "", f"unnest({arrays}) AS v({names})", list(_column_arrays(columns, rows))
    placeholder = "(" + ", ".join("%s" for _ in columns) + ")"
    params = [value for row in zip(*_column_arrays(columns, rows), strict=True) for value in row]
    return f"WITH v({names}) AS (VALUES {', '.join(placeholder for _ in rows)}) ", "v", params


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
    """UPDATE `model`'s table from `rows`, joined on its primary key: `columns` names and types the rows' columns
    (the first is the key), `assignments` is the SET clause over `t` (the row) and `v` (its values; no parameters
    of its own: a value goes in a column), `where` more conditions (with `where_params`). Answers the updated rows'
    keys when `returning` (else [])."""
    if not rows:
        return []
    qn = connection.ops.quote_name
    pk = qn(model._meta.pk.column)
    with_clause, source, params = _source(columns, rows)
    # identifiers quoted; `assignments` and `where` are the caller's code; every value is a parameter
    sql = (
        f"{with_clause}UPDATE {qn(model._meta.db_table)} AS t SET {assignments} FROM {source} "  # noqa: S608
        f"WHERE t.{pk} = v.{qn(columns[0][0])}{f' AND ({where})' if where else ''}"
        f"{f' RETURNING {pk}' if returning else ''}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *where_params])
        if not returning:
            return []
        key = columns[0][1]
        return [key.to_python(row[0]) for row in cursor.fetchall()]


def values_insert(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT `rows` (values of `fields`, in order) into `model`'s table in one short statement (on PostgreSQL,
    whatever the row count), with no model instances built; defaults are not applied: give every column needed."""
    if not rows:
        return
    qn = connection.ops.quote_name
    columns: list[tuple[str, Field[Any, Any]]] = []
    for name in fields:
        field = model._meta.get_field(name)
        assert isinstance(field, Field) and field.column
        columns.append((field.column, field))
    with_clause, source, params = _source(columns, rows)
    names = ", ".join(qn(column) for column, _ in columns)
    sql = f"{with_clause}INSERT INTO {qn(model._meta.db_table)} ({names}) SELECT {names} FROM {source}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
