from __future__ import annotations

from django.db import models

from controlplane.fields import HexField, WeiField
from progress.quorum import stake_holds_quorum, stake_percent

# Bounds (seconds) of the quorum-time histogram. Its counts are kept by triggers made from these bounds
# (progress migration 0002): a change here needs a migration that makes them again.
QUORUM_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def quorum_keys_sql() -> str:
    """The counted keys of one progress row: each bucket its quorum time falls in, the count and the sum."""
    bounds = ", ".join(f"{int(b * 1000)}" for b in QUORUM_BUCKETS)
    return (
        "CASE WHEN quorum_ms IS NULL THEN ARRAY[]::text[] ELSE "
        f"ARRAY(SELECT 'quorum:le:' || b FROM unnest(ARRAY[{bounds}]) b WHERE quorum_ms <= b) "
        "|| ARRAY['quorum:count', 'quorum:sum_ms|' || quorum_ms] END"
    )


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
    # Milliseconds from the batch's first sighting to quorum, stored once: the quorum-time histogram is counted
    # from it by the writes (see QUORUM_BUCKETS), never by joining every progress row to its batch.
    quorum_ms = models.BigIntegerField(null=True, blank=True)
    at_risk = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_batchprogress"
        indexes = [models.Index(fields=["at_risk"])]

    def __str__(self) -> str:
        return f"progress of {self.batch_id}: {self.signed_percentage:.1f}%"

    @property
    def signed_percentage(self) -> float:
        return stake_percent(part=self.signed_stake, total=self.total_stake)

    @property
    def quorum_reached(self) -> bool:
        return stake_holds_quorum(
            signed=self.signed_stake, total=self.total_stake, threshold=self.threshold_percentage
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
