import controlplane.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("monitoring", "0005_batchrefusal"),
        ("ledger", "0001_initial"),
    ]

    # Batch progress and its changes, taken over from ``monitoring`` with their tables.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BatchProgressChange",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("batch_identifier", controlplane.fields.HexField(max_length=66)),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("quorum_reached", "Quorum reached"),
                                    ("at_risk", "Became at risk"),
                                    ("recovered", "No longer at risk"),
                                ],
                                max_length=32,
                            ),
                        ),
                        ("signed_stake", controlplane.fields.WeiField()),
                        ("total_stake", controlplane.fields.WeiField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_batchprogresschange",
                        "indexes": [
                            models.Index(
                                fields=["batch_identifier", "created_at"],
                                name="monitoring__batch_i_2fa787_idx",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="BatchProgress",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("total_stake", controlplane.fields.WeiField(default=0)),
                        ("signed_stake", controlplane.fields.WeiField(default=0)),
                        ("live_unsigned_stake", controlplane.fields.WeiField(default=0)),
                        ("threshold_percentage", models.PositiveSmallIntegerField(default=67)),
                        ("signed_operator_ids", models.JSONField(default=list)),
                        ("unsigned_operator_ids", models.JSONField(default=list)),
                        ("quorum_reached_at", models.DateTimeField(blank=True, null=True)),
                        ("at_risk", models.BooleanField(default=False)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "batch",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="progress",
                                to="ledger.batch",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "monitoring_batchprogress",
                        "indexes": [models.Index(fields=["at_risk"], name="monitoring__at_risk_c9f7f0_idx")],
                    },
                ),
            ],
        ),
    ]
