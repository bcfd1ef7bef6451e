"""Drop the varchar_pattern_ops index Django adds beside every unique CharField on Postgres.

No query matches batch identifiers by prefix (they are looked up whole, through the unique index), yet every
ingested batch was written to it, and it grows with history (66 characters a batch). Django drops such indexes
with IF EXISTS when a field changes, so its absence disturbs no later migration.
"""

from __future__ import annotations

from django.db import migrations

LIKE_INDEX = "monitoring_batch_identifier_27e9e308_like"


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_batch_first_seen"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"DROP INDEX IF EXISTS {LIKE_INDEX}",
            reverse_sql=f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON monitoring_batch (identifier varchar_pattern_ops)",
        ),
    ]
