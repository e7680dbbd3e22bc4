"""PostgreSQL: the expression index a numeric attribute condition needs is built (outside any transaction)."""

from __future__ import annotations

import pytest
from django.db import connection

from contacts.services.segments import segment_indexes_ensure

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="expression indexes are built on PostgreSQL only")
def test_numeric_attribute_conditions_get_an_expression_index_that_the_planner_uses():
    conditions = [
        {"field": "attributes.tier", "operator": "equals", "value": "gold"},  # text: served by the GIN index
        {"match": "any", "conditions": [{"field": "attributes.purchaseCount", "operator": "greaterThan", "value": 5}]},
    ]

    made = segment_indexes_ensure(conditions=conditions)
    again = segment_indexes_ensure(conditions=conditions)

    assert len(made) == 1 and made == again  # one key compared as a number; building twice is harmless
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [made[0]])
        (definition,) = cursor.fetchone()
    assert "mktx_attr_num(attributes, 'purchaseCount'::text)" in definition
    for index in made:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {index}")


def test_nothing_is_built_inside_a_transaction_or_off_postgresql():
    from django.db import transaction

    with transaction.atomic():
        assert segment_indexes_ensure(conditions=[{"field": "attributes.n", "operator": "lessThan", "value": 1}]) == []
