from __future__ import annotations

from django.db import models

from controlplane.fields import HexField


class OperatorState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    UP = "up", "Up"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


class OperatorLiveness(models.Model):
    """The current liveness of one operator (one row each); its history is in OperatorStateChange."""

    operator_id = HexField(max_length=66, unique=True)
    state = models.CharField(max_length=16, choices=OperatorState.choices, default=OperatorState.UNKNOWN)
    since = models.DateTimeField()
    last_probe_at = models.DateTimeField(null=True, blank=True)
    # A probe that answered, or an accepted signature: either is a sign of life.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    node_version = models.CharField(max_length=128, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "monitoring_operatorliveness"

    def __str__(self) -> str:
        return f"{self.operator_id[:10]} {self.state}"


class OperatorStateChange(models.Model):
    """Append-only state flips: since/until give each operator's downtime windows."""

    operator_id = HexField(max_length=66)
    state = models.CharField(max_length=16, choices=OperatorState.choices)
    since = models.DateTimeField()
    until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")

    class Meta:
        db_table = "monitoring_operatorstatechange"
        indexes = [models.Index(fields=["operator_id", "since"])]

    def __str__(self) -> str:
        return f"{self.operator_id[:10]} {self.state} since {self.since:%Y-%m-%d %H:%M:%S}"
