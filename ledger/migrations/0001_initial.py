import controlplane.fields
import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("monitoring", "0005_batchrefusal"),
    ]

    # Batches, operators and the chain's own rows, taken over from ``monitoring`` with their tables.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Operator",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("operator_id", controlplane.fields.HexField(max_length=66, unique=True)),
                        ("address", controlplane.fields.HexField(db_index=True, max_length=42)),
                        ("pubkey_g1", models.JSONField(default=dict)),
                        ("pubkey_g2", models.JSONField(default=dict)),
                        ("socket", models.TextField(blank=True, default="")),
                        ("registered", models.BooleanField(default=False)),
                        ("registered_block", models.BigIntegerField(blank=True, null=True)),
                        ("deregistered_block", models.BigIntegerField(blank=True, null=True)),
                        ("current_stake", controlplane.fields.WeiField(default=0)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "monitoring_operator",
                    },
                ),
                migrations.CreateModel(
                    name="Batch",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("identifier", controlplane.fields.HexField(max_length=66, unique=True)),
                        ("merkle_root", controlplane.fields.HexField(max_length=66)),
                        ("sender", controlplane.fields.HexField(max_length=42)),
                        ("task_created_block", models.BigIntegerField()),
                        ("data_pointer", models.TextField()),
                        ("fee_limit", controlplane.fields.WeiField(blank=True, null=True)),
                        ("event_version", models.PositiveSmallIntegerField(default=3)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("verified", "Verified"),
                                    ("orphaned", "Orphaned"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("created_block", models.BigIntegerField()),
                        ("created_tx", controlplane.fields.HexField(max_length=66)),
                        ("verified_block", models.BigIntegerField(blank=True, null=True)),
                        ("verified_tx", controlplane.fields.HexField(blank=True, default="", max_length=66)),
                        ("first_seen_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "monitoring_batch",
                        "indexes": [
                            models.Index(
                                fields=["status", "created_block"], name="monitoring__status_6c3529_idx"
                            ),
                            models.Index(fields=["-created_block", "-id"], name="batch_newest_first"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Block",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("chain_id", models.BigIntegerField()),
                        ("number", models.BigIntegerField()),
                        ("hash", controlplane.fields.HexField(max_length=66)),
                        ("parent_hash", controlplane.fields.HexField(blank=True, default="", max_length=66)),
                        ("timestamp", models.BigIntegerField(blank=True, null=True)),
                        ("removed", models.BooleanField(default=False)),
                        ("seen_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_block",
                        "indexes": [
                            models.Index(fields=["chain_id", "number"], name="monitoring__chain_i_bcefc2_idx")
                        ],
                        "constraints": [
                            models.UniqueConstraint(fields=("chain_id", "hash"), name="block_unique_hash")
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="ChainEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("chain_id", models.BigIntegerField()),
                        ("block_number", models.BigIntegerField()),
                        ("block_hash", controlplane.fields.HexField(max_length=66)),
                        ("log_index", models.IntegerField()),
                        ("transaction_hash", controlplane.fields.HexField(max_length=66)),
                        ("transaction_index", models.IntegerField()),
                        ("address", controlplane.fields.HexField(max_length=42)),
                        ("topic0", controlplane.fields.HexField(max_length=66)),
                        ("name", models.CharField(max_length=64)),
                        ("subject", controlplane.fields.HexField(blank=True, default="", max_length=66)),
                        ("args", models.JSONField()),
                        ("removed", models.BooleanField(default=False)),
                        ("removed_at", models.DateTimeField(blank=True, null=True)),
                        ("ingested_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_chainevent",
                        "indexes": [
                            models.Index(
                                fields=["subject", "block_number", "log_index"],
                                name="monitoring__subject_538c94_idx",
                            ),
                            django.contrib.postgres.indexes.BrinIndex(
                                fields=["block_number"], name="event_block_brin"
                            ),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("chain_id", "block_hash", "log_index"), name="event_unique_log"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="IngestCursor",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("chain_id", models.BigIntegerField()),
                        ("address", controlplane.fields.HexField(max_length=42)),
                        ("block_number", models.BigIntegerField()),
                        ("block_hash", controlplane.fields.HexField(max_length=66)),
                        ("genesis_hash", controlplane.fields.HexField(blank=True, default="", max_length=66)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "monitoring_ingestcursor",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("chain_id", "address"), name="cursor_unique_contract"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="IngestIncident",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("chain_id", models.BigIntegerField()),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("reorg", "Reorg"),
                                    ("deep_reorg", "Reorg deeper than the blocks kept"),
                                    ("rpc_error", "RPC error"),
                                    (
                                        "chain_changed",
                                        "The node serves a different chain than the ledger holds",
                                    ),
                                    ("ledger_reset", "Ledger reset"),
                                ],
                                max_length=32,
                            ),
                        ),
                        ("address", controlplane.fields.HexField(blank=True, default="", max_length=42)),
                        ("block_number", models.BigIntegerField(blank=True, null=True)),
                        ("depth", models.IntegerField(blank=True, null=True)),
                        ("detail", models.TextField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_ingestincident",
                        "indexes": [
                            models.Index(fields=["kind", "created_at"], name="monitoring__kind_86cf00_idx")
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="OperatorStake",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("operator_id", controlplane.fields.HexField(max_length=66)),
                        ("quorum_number", models.PositiveSmallIntegerField(default=0)),
                        ("stake", controlplane.fields.WeiField()),
                        ("block_number", models.BigIntegerField()),
                        ("log_index", models.IntegerField()),
                        ("removed", models.BooleanField(default=False)),
                        (
                            "event",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="stake_update",
                                to="ledger.chainevent",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "monitoring_operatorstake",
                        "indexes": [
                            models.Index(
                                fields=["operator_id", "quorum_number", "block_number", "log_index"],
                                name="monitoring__operato_0a841f_idx",
                            )
                        ],
                    },
                ),
            ],
        ),
    ]
