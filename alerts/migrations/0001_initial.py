import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("monitoring", "0005_batchrefusal"),
    ]

    # Alerts, watches and webhooks, taken over from ``monitoring`` with their tables.
    # State only: the tables already exist (Meta.db_table keeps their names), so no SQL runs.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AlertWatch",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("key", models.CharField(max_length=128, unique=True)),
                        ("value", models.CharField(max_length=200)),
                        ("since", models.DateTimeField()),
                    ],
                    options={
                        "db_table": "monitoring_alertwatch",
                    },
                ),
                migrations.CreateModel(
                    name="WebhookEndpoint",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=100)),
                        ("url", models.URLField(max_length=500)),
                        ("active", models.BooleanField(default=True)),
                        ("created_by", models.CharField(blank=True, default="", max_length=150)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "monitoring_webhookendpoint",
                    },
                ),
                migrations.CreateModel(
                    name="Alert",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("batch_at_risk", "Batch at risk"),
                                    ("batch_stalled", "Batch stalled"),
                                    ("operator_down", "Operator down"),
                                    ("quorum_impossible", "Quorum impossible"),
                                    ("aggregator_unreachable", "Aggregator unreachable"),
                                    ("aggregator_restarted", "Aggregator restarted"),
                                    ("ingest_lag", "Ingest lagging"),
                                    ("ingest_stopped", "Ingest stopped"),
                                    ("deep_reorg", "Deep reorg"),
                                    ("invalid_signature", "Invalid signature"),
                                    ("conflicting_signature", "Conflicting signatures"),
                                    ("recovery_failing", "Recovery failing"),
                                ],
                                max_length=32,
                            ),
                        ),
                        ("subject", models.CharField(blank=True, default="", max_length=66)),
                        (
                            "severity",
                            models.CharField(
                                choices=[("critical", "Critical"), ("warning", "Warning"), ("info", "Info")],
                                max_length=16,
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[("open", "Open"), ("resolved", "Resolved")],
                                default="open",
                                max_length=16,
                            ),
                        ),
                        ("summary", models.TextField()),
                        ("details", models.JSONField(blank=True, default=dict)),
                        ("opened_at", models.DateTimeField()),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        ("resolution", models.TextField(blank=True, default="")),
                        ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                        ("acknowledged_by", models.CharField(blank=True, default="", max_length=150)),
                    ],
                    options={
                        "db_table": "monitoring_alert",
                        "indexes": [
                            models.Index(fields=["state", "opened_at"], name="monitoring__state_3e380c_idx"),
                            models.Index(fields=["kind", "opened_at"], name="monitoring__kind_aa67a6_idx"),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("state", "open")),
                                fields=("kind", "subject"),
                                name="alert_one_open_per_subject",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(("resolved_at__isnull", True), ("state", "open")),
                                    models.Q(("resolved_at__isnull", False), ("state", "resolved")),
                                    _connector="OR",
                                ),
                                name="alert_resolved_iff_resolved_at",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="WebhookDelivery",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "event",
                            models.CharField(
                                choices=[("firing", "Firing"), ("resolved", "Resolved")], max_length=16
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[("pending", "Pending"), ("delivered", "Delivered")],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("next_attempt_at", models.DateTimeField()),
                        ("lease_until", models.DateTimeField(blank=True, null=True)),
                        ("last_status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("last_error", models.TextField(blank=True, default="")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("delivered_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "alert",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="deliveries",
                                to="alerts.alert",
                            ),
                        ),
                        (
                            "endpoint",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="deliveries",
                                to="alerts.webhookendpoint",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "monitoring_webhookdelivery",
                    },
                ),
                migrations.CreateModel(
                    name="WebhookAttempt",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("error", models.TextField(blank=True, default="")),
                        ("duration_ms", models.PositiveIntegerField(default=0)),
                        ("attempted_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "delivery",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="log",
                                to="alerts.webhookdelivery",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "monitoring_webhookattempt",
                    },
                ),
                migrations.AddIndex(
                    model_name="webhookdelivery",
                    index=models.Index(
                        fields=["status", "next_attempt_at"], name="monitoring__status_ec92c3_idx"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="webhookdelivery",
                    constraint=models.UniqueConstraint(
                        fields=("endpoint", "alert", "event"), name="webhook_delivery_once"
                    ),
                ),
            ],
        ),
    ]
