"""Forward tasks name their batch (``<batch>:<first signature id>``), one per batch and verifier pass, where
they named one signature each. Open ones are renamed so their work carries on; settled ones keep their old
subject (history, pruned by retention)."""

from __future__ import annotations

from django.db import migrations, models

FORWARD = """
UPDATE recovery_recoverytask t SET subject = s.batch_identifier || ':' || s.id
FROM monitoring_signature s
WHERE t.kind = 'forward' AND t.status IN ('pending', 'running') AND t.subject ~ '^[0-9]+$'
    AND s.id = t.subject::bigint
"""
BACK = """
UPDATE recovery_recoverytask SET subject = split_part(subject, ':', 2)
WHERE kind = 'forward' AND status IN ('pending', 'running') AND subject LIKE '%:%'
"""

KINDS = [
    ("forward", "Forward verified signatures"),
    ("replay", "Replay a batch to the aggregator"),
    ("catchup", "Operator catch-up"),
    ("respond", "Standby response on chain"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("recovery", "0007_brin_autosummarize"),
        ("intake", "0002_signature_rowcounts"),
    ]

    operations = [
        migrations.AlterField(model_name="recoverytask", name="subject", field=models.CharField(max_length=100)),
        migrations.AlterField(model_name="recoverytask", name="kind", field=models.CharField(choices=KINDS, max_length=16)),
        migrations.AlterField(model_name="recoveryrun", name="kind", field=models.CharField(choices=KINDS, max_length=16)),
        migrations.RunSQL(FORWARD, BACK),
    ]
