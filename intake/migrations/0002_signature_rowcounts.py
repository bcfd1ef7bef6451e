"""monitoring_signature counted by the writes (``controlplane.rowcounts``): its counts by signatures key, backfilled."""

from __future__ import annotations

from django.db import migrations

from controlplane.rowcounts import triggers_sql

CREATE, DROP = triggers_sql(
    table="monitoring_signature",
    prefix="signatures",
    keys="ARRAY['signatures:' || status, 'signatures:operator:' || operator_id || ':' || status] || CASE WHEN conflicting THEN ARRAY['signatures:conflicting'] ELSE ARRAY[]::text[] END",
)


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0001_initial"),
        ("controlplane", "0003_rowcount"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
