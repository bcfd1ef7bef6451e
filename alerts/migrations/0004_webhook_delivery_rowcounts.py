"""monitoring_webhookdelivery counted by the writes (``controlplane.rowcounts``): by endpoint and status."""

from __future__ import annotations

from django.db import migrations

from controlplane.rowcounts import triggers_sql

CREATE, DROP = triggers_sql(
    table="monitoring_webhookdelivery",
    prefix="webhook_deliveries",
    keys="ARRAY['webhook_deliveries:' || endpoint_id || ':' || status]",
)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0003_alert_rowcounts"),
        ("controlplane", "0003_rowcount"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
