from __future__ import annotations

from django.db import models

from controlplane.fields import HexField, WeiField


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Verified"
    # Its NewBatch log was orphaned by a reorg and not re-included: no longer pending.
    ORPHANED = "orphaned", "Orphaned"


class Batch(models.Model):
    """A task created by NewBatchV3 (or V2), keyed by batchIdentifierHash = keccak256(root ‖ sender)."""

    identifier = HexField(max_length=66, unique=True)
    merkle_root = HexField(max_length=66)
    sender = HexField(max_length=42)
    task_created_block = models.BigIntegerField()
    data_pointer = models.TextField()
    fee_limit = WeiField(null=True, blank=True)
    event_version = models.PositiveSmallIntegerField(default=3)
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    created_block = models.BigIntegerField()
    created_tx = HexField(max_length=66)
    verified_block = models.BigIntegerField(null=True, blank=True)
    verified_tx = HexField(max_length=66, blank=True, default="")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_batch"
        indexes = [
            models.Index(fields=["status", "created_block"]),
            models.Index(fields=["-created_block", "-id"], name="batch_newest_first"),
            # Pages read batches of a time window (an operator's missed ones): found by time, not by a scan.
            models.Index(fields=["first_seen_at"], name="batch_first_seen"),
        ]

    def __str__(self) -> str:
        return f"batch {self.identifier[:10]} ({self.status})"
