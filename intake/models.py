from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from controlplane.fields import HexField


class SignatureStatus(models.TextChoices):
    # The batch is not in the ledger yet (an operator can be faster than the ingester).
    WAITING = "waiting", "Waiting for its batch"
    PENDING = "pending", "Pending verification"
    VERIFIED = "verified", "Verified"
    INVALID = "invalid", "Invalid"
    # Never matched a batch within the waiting window: parked, and matched after all if its batch turns up.
    EXPIRED = "expired", "Expired"


class Signature(models.Model):
    """An operator's signed task response, stored before it is acknowledged.

    Unique on (batch, operator, signature): an identical retry is a duplicate. A different signature by the same
    operator for the same batch is kept too, as evidence, and both are flagged ``conflicting``; verification
    decides which (at most one) is valid, so a forged first submission can never displace the real one.
    """

    batch_identifier = HexField(max_length=66)
    batch_merkle_root = HexField(max_length=66)
    sender_address = HexField(max_length=42)
    operator_id = HexField(max_length=66)
    signature_x = HexField(max_length=66)
    signature_y = HexField(max_length=66)
    status = models.CharField(max_length=16, choices=SignatureStatus.choices, default=SignatureStatus.PENDING)
    status_reason = models.TextField(blank=True, default="")
    conflicting = models.BooleanField(default=False)
    source = models.CharField(max_length=64, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_signature"
        constraints = [
            models.UniqueConstraint(
                fields=["batch_identifier", "operator_id", "signature_x", "signature_y"],
                name="signature_unique_submission",
            ),
        ]
        indexes = [
            models.Index(fields=["batch_identifier", "status"]),
            models.Index(fields=["operator_id", "received_at"]),
            models.Index(fields=["status", "received_at"]),
            # Rows arrive in time order: retention finds the old ones through a BRIN index at almost no write cost,
            # and finds nothing at once when nothing is old enough.
            BrinIndex(fields=["received_at"], name="signature_received_brin", autosummarize=True),
            # Conflicting signatures are rare: the alert rule finds the recent ones without reading the others.
            models.Index(
                fields=["received_at"],
                condition=models.Q(conflicting=True),
                name="signature_conflicting_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"signature {self.operator_id[:10]} on {self.batch_identifier[:10]} ({self.status})"


class BatchRefusal(models.Model):
    """An operator said it will not sign a batch on purpose (a bad proof, a wrong root): its answer, not a miss.

    Recorded from the operator's own answer to a catch-up request; a batch it refused is never counted as
    missed by it, nor asked about again.
    """

    operator_id = HexField(max_length=66)
    batch_identifier = HexField(max_length=66)
    reason = models.TextField(blank=True, default="")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_batchrefusal"
        constraints = [
            models.UniqueConstraint(
                fields=["operator_id", "batch_identifier"], name="refusal_once_per_batch"
            ),
        ]
        indexes = [models.Index(fields=["batch_identifier"])]

    def __str__(self) -> str:
        return f"{self.operator_id[:10]} refused {self.batch_identifier[:10]}"
