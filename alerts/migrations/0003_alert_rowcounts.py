"""monitoring_alert counted by the writes (``controlplane.rowcounts``): its counts by kind and state, backfilled."""

from __future__ import annotations

from django.db import migrations

from controlplane.rowcounts import triggers_sql

CREATE, DROP = triggers_sql(
    table="monitoring_alert",
    prefix="alerts",
    keys="ARRAY['alerts:' || kind || ':' || state]",
)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_standby_alert_kinds"),
        ("controlplane", "0003_rowcount"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
