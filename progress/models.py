from __future__ import annotations

from django.db import models

from controlplane.fields import HexField, WeiField


class BatchProgress(models.Model):
    """Stake-weighted progress of one batch toward quorum, persisted so lists and sockets read it cheaply."""

    batch = models.OneToOneField("ledger.Batch", on_delete=models.CASCADE, related_name="progress")
    total_stake = WeiField(default=0)
    signed_stake = WeiField(default=0)
    # Stake of live operators that have not signed yet: what could still arrive.
    live_unsigned_stake = WeiField(default=0)
    threshold_percentage = models.PositiveSmallIntegerField(default=67)
    signed_operator_ids = models.JSONField(default=list)
    unsigned_operator_ids = models.JSONField(default=list)
    quorum_reached_at = models.DateTimeField(null=True, blank=True)
    at_risk = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_batchprogress"
        indexes = [models.Index(fields=["at_risk"])]

    def __str__(self) -> str:
        return f"progress of {self.batch_id}: {self.signed_percentage:.1f}%"

    @property
    def signed_percentage(self) -> float:
        return float(self.signed_stake * 100 / self.total_stake) if self.total_stake else 0.0

    @property
    def quorum_reached(self) -> bool:
        return (
            bool(self.total_stake) and self.signed_stake * 100 >= self.total_stake * self.threshold_percentage
        )


class BatchProgressChangeKind(models.TextChoices):
    QUORUM_REACHED = "quorum_reached", "Quorum reached"
    AT_RISK = "at_risk", "Became at risk"
    RECOVERED = "recovered", "No longer at risk"


class BatchProgressChange(models.Model):
    """Append-only: each time a batch's quorum state flips."""

    batch_identifier = HexField(max_length=66)
    kind = models.CharField(max_length=32, choices=BatchProgressChangeKind.choices)
    signed_stake = WeiField()
    total_stake = WeiField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_batchprogresschange"
        indexes = [models.Index(fields=["batch_identifier", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.batch_identifier[:10]}"
