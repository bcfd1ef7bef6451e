"""monitoring_batch counted by the writes (``controlplane.rowcounts``): its counts by batches key, backfilled."""

from __future__ import annotations

from django.db import migrations

from controlplane.rowcounts import triggers_sql

CREATE, DROP = triggers_sql(
    table="monitoring_batch",
    prefix="batches",
    keys="ARRAY['batches:' || status]",
)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0001_initial"),
        ("controlplane", "0003_rowcount"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
