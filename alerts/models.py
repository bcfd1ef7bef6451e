"""Alerts and their webhook deliveries: each alert is one row, opened and resolved exactly once."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AlertKind(models.TextChoices):
    BATCH_AT_RISK = "batch_at_risk", "Batch at risk"
    BATCH_STALLED = "batch_stalled", "Batch stalled"
    OPERATOR_DOWN = "operator_down", "Operator down"
    QUORUM_IMPOSSIBLE = "quorum_impossible", "Quorum impossible"
    AGGREGATOR_UNREACHABLE = "aggregator_unreachable", "Aggregator unreachable"
    AGGREGATOR_RESTARTED = "aggregator_restarted", "Aggregator restarted"
    INGEST_LAG = "ingest_lag", "Ingest lagging"
    INGEST_STOPPED = "ingest_stopped", "Ingest stopped"
    DEEP_REORG = "deep_reorg", "Deep reorg"
    INVALID_SIGNATURE = "invalid_signature", "Invalid signature"
    CONFLICTING_SIGNATURE = "conflicting_signature", "Conflicting signatures"
    RECOVERY_FAILING = "recovery_failing", "Recovery failing"
    STANDBY_ANSWERED = "standby_answered", "Answered by the standby"
    RESPONDER_BALANCE_LOW = "responder_balance_low", "Responder balance low"
    WINDOW_CLOSING = "window_closing", "Batch leaving its window unanswered"


class AlertSeverity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One occurrence of a condition: opened once, resolved once, never re-sent while nothing changes.

    ``subject`` names what the alert is about (a batch identifier, an operatorId, a recovery task id) or is
    empty for network-wide conditions; at most one alert per (kind, subject) is open at a time.
    """

    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    subject = models.CharField(max_length=66, blank=True, default="")
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    summary = models.TextField()
    # Facts at opening (stake share, lag in blocks, ...): what a person needs without opening the dashboard.
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True, default="")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "monitoring_alert"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=Q(state="open"),
                name="alert_one_open_per_subject",
            ),
            models.CheckConstraint(
                condition=Q(state="open", resolved_at__isnull=True)
                | Q(state="resolved", resolved_at__isnull=False),
                name="alert_resolved_iff_resolved_at",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "opened_at"]),
            models.Index(fields=["kind", "opened_at"]),
        ]

    def __str__(self) -> str:
        about = f" {self.subject[:12]}" if self.subject else ""
        return f"{self.kind}{about} ({self.state})"


class AlertWatch(models.Model):
    """What the alert evaluator last observed of something that alerts only by how long it has held.

    ``since`` is when ``value`` was first observed (the aggregator failing, a cursor standing at one block), so a
    replica taking over knows how long a condition has lasted without having watched it itself.
    """

    key = models.CharField(max_length=128, unique=True)
    value = models.CharField(max_length=200)
    since = models.DateTimeField()

    class Meta:
        db_table = "monitoring_alertwatch"

    def __str__(self) -> str:
        return f"{self.key} = {self.value[:30]} since {self.since:%Y-%m-%d %H:%M:%S}"


class WebhookEndpoint(models.Model):
    """A receiver registered by staff; every alert opening and resolution is delivered to each active one."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_webhookendpoint"

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


class WebhookEvent(models.TextChoices):
    # Alertmanager's status values, so existing Slack/PagerDuty bridges understand them.
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"


class WebhookDelivery(models.Model):
    """One alert event owed to one endpoint: retried until the receiver takes it, never dropped."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=WebhookEvent.choices)
    status = models.CharField(
        max_length=16, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_webhookdelivery"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "alert", "event"], name="webhook_delivery_once"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """Append-only delivery log: every POST made to a receiver and what it answered."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    attempted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_webhookattempt"

    def __str__(self) -> str:
        return f"attempt on delivery {self.delivery_id}: {self.status_code or self.error[:30]}"
