import controlplane.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("monitoring", "0005_batchrefusal"),
    ]

    # Operator liveness and its state changes, taken over from ``monitoring`` with their tables.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="OperatorLiveness",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("operator_id", controlplane.fields.HexField(max_length=66, unique=True)),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("unknown", "Unknown"),
                                    ("up", "Up"),
                                    ("degraded", "Degraded"),
                                    ("down", "Down"),
                                ],
                                default="unknown",
                                max_length=16,
                            ),
                        ),
                        ("since", models.DateTimeField()),
                        ("last_probe_at", models.DateTimeField(blank=True, null=True)),
                        ("last_seen_at", models.DateTimeField(blank=True, null=True)),
                        ("node_version", models.CharField(blank=True, default="", max_length=128)),
                        ("last_error", models.TextField(blank=True, default="")),
                        ("consecutive_failures", models.PositiveIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "monitoring_operatorliveness",
                    },
                ),
                migrations.CreateModel(
                    name="OperatorStateChange",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("operator_id", controlplane.fields.HexField(max_length=66)),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("unknown", "Unknown"),
                                    ("up", "Up"),
                                    ("degraded", "Degraded"),
                                    ("down", "Down"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("since", models.DateTimeField()),
                        ("until", models.DateTimeField(blank=True, null=True)),
                        ("reason", models.TextField(blank=True, default="")),
                    ],
                    options={
                        "db_table": "monitoring_operatorstatechange",
                        "indexes": [
                            models.Index(
                                fields=["operator_id", "since"], name="monitoring__operato_327920_idx"
                            )
                        ],
                    },
                ),
            ],
        ),
    ]
