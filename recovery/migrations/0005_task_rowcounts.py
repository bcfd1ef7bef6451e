"""recovery_recoverytask counted by the writes (``controlplane.rowcounts``): its counts by recovery_tasks key, backfilled."""

from __future__ import annotations

from django.db import migrations

from controlplane.rowcounts import triggers_sql

CREATE, DROP = triggers_sql(
    table="recovery_recoverytask",
    prefix="recovery_tasks",
    keys="ARRAY['recovery_tasks:' || kind || ':' || status]",
)


class Migration(migrations.Migration):
    dependencies = [
        ("recovery", "0004_standby_responses"),
        ("controlplane", "0003_rowcount"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
