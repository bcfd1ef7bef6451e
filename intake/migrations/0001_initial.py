import controlplane.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("monitoring", "0005_batchrefusal"),
    ]

    # Signatures and refusals, taken over from ``monitoring`` with their tables.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BatchRefusal",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("operator_id", controlplane.fields.HexField(max_length=66)),
                        ("batch_identifier", controlplane.fields.HexField(max_length=66)),
                        ("reason", models.TextField(blank=True, default="")),
                        ("recorded_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_batchrefusal",
                        "indexes": [
                            models.Index(fields=["batch_identifier"], name="monitoring__batch_i_efc9f0_idx")
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("operator_id", "batch_identifier"), name="refusal_once_per_batch"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Signature",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("batch_identifier", controlplane.fields.HexField(max_length=66)),
                        ("batch_merkle_root", controlplane.fields.HexField(max_length=66)),
                        ("sender_address", controlplane.fields.HexField(max_length=42)),
                        ("operator_id", controlplane.fields.HexField(max_length=66)),
                        ("signature_x", controlplane.fields.HexField(max_length=66)),
                        ("signature_y", controlplane.fields.HexField(max_length=66)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("waiting", "Waiting for its batch"),
                                    ("pending", "Pending verification"),
                                    ("verified", "Verified"),
                                    ("invalid", "Invalid"),
                                    ("expired", "Expired"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("status_reason", models.TextField(blank=True, default="")),
                        ("conflicting", models.BooleanField(default=False)),
                        ("source", models.CharField(blank=True, default="", max_length=64)),
                        ("received_at", models.DateTimeField(auto_now_add=True)),
                        ("verified_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "monitoring_signature",
                        "indexes": [
                            models.Index(
                                fields=["batch_identifier", "status"], name="monitoring__batch_i_c9f8df_idx"
                            ),
                            models.Index(
                                fields=["operator_id", "received_at"], name="monitoring__operato_ebd126_idx"
                            ),
                            models.Index(
                                fields=["status", "received_at"], name="monitoring__status_1d20e0_idx"
                            ),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("batch_identifier", "operator_id", "signature_x", "signature_y"),
                                name="signature_unique_submission",
                            )
                        ],
                    },
                ),
            ],
        ),
    ]
