"""The batch table carries the indexes its queries use, and no more: each one is paid for by every ingested batch."""

from __future__ import annotations

import pytest
from django.db import connection


def _indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_it_keeps_no_prefix_index_on_batch_identifiers() -> None:
    indexes = _indexes("monitoring_batch")
    assert [name for name, definition in indexes.items() if "pattern_ops" in definition] == []
    assert any(
        definition.startswith("CREATE UNIQUE INDEX") and definition.endswith("(identifier)")
        for definition in indexes.values()
    ), "identifiers stay unique"
