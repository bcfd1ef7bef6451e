"""Recovery work as Postgres rows: Postgres is the truth, RQ jobs are only how rows get worked on sooner."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q

from controlplane.fields import HexField, WeiField


class RecoveryKind(models.TextChoices):
    # Deliver a batch's verified signatures to the current aggregator; done on their acknowledgement.
    FORWARD = "forward", "Forward verified signatures"
    # Announce a pending batch's task to the current aggregator and (re)send its verified signatures.
    REPLAY = "replay", "Replay a batch to the aggregator"
    # Ask an operator, through its control endpoint, to process the batches it missed.
    CATCHUP = "catchup", "Operator catch-up"
    # Answer a pending batch on chain ourselves (respondToTaskV2), as the aggregator's standby.
    RESPOND = "respond", "Standby response on chain"


class RecoveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    # Given up: only when the work can no longer matter (the batch is verified on chain or gone).
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATUSES = (RecoveryStatus.PENDING, RecoveryStatus.RUNNING)


class RecoveryTask(models.Model):
    """One unit of recovery work. At most one open task per (kind, subject); claimed with a lease."""

    kind = models.CharField(max_length=16, choices=RecoveryKind.choices)
    # batch:first signature id (forward, one per batch and verifier pass), a batch identifier (replay, respond) or
    # an operatorId (catch-up).
    subject = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=RecoveryStatus.choices, default=RecoveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=128, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=150, default="system")
    reason = models.TextField(blank=True, default="")
    result = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey("recovery.RecoveryRun", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=Q(status__in=["pending", "running"]),
                name="recovery_one_open_task_per_subject",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["status", "lease_until"]),
            models.Index(fields=["kind", "subject"]),
            # Tasks finish in about time order: retention's scan for long-finished ones reads only old ranges.
            BrinIndex(fields=["finished_at"], name="recoverytask_finished_brin", autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject[:12]} ({self.status})"


class RecoveryRun(models.Model):
    """An audited, staff-requested recovery: who asked, what was planned, what came of it."""

    kind = models.CharField(max_length=16, choices=RecoveryKind.choices)
    scope = models.CharField(max_length=66)  # a batch identifier, "all-pending", or an operatorId
    requested_by = models.CharField(max_length=150)
    dry_run = models.BooleanField(default=False)
    plan = models.JSONField(default=dict)
    outcome = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.scope[:12]} by {self.requested_by}"


class AggregatorBoot(models.Model):
    """Append-only: each aggregator boot id the control plane has seen, and when."""

    boot_id = models.CharField(max_length=64, unique=True)
    url = models.CharField(max_length=256)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"aggregator boot {self.boot_id[:8]}"


class SignatureDelivery(models.Model):
    """A verified signature acknowledged by one aggregator boot: delivered means acknowledged by the current one."""

    signature = models.ForeignKey("intake.Signature", on_delete=models.CASCADE, related_name="deliveries")
    boot_id = models.CharField(max_length=64)
    batch_identifier = HexField(max_length=66)
    answer = models.CharField(max_length=32)
    delivered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["signature", "boot_id"], name="delivery_once_per_boot"),
        ]
        indexes = [models.Index(fields=["batch_identifier", "boot_id"])]

    def __str__(self) -> str:
        return f"signature {self.signature_id} to {self.boot_id[:8]}"


class CatchupAsk(models.Model):
    """How often, and when last, an operator was asked (by catch-up) to process one batch.

    Asks about a batch never stop while it is pending and owed, but each comes later than the one before (the
    catch-up grace, doubling, up to RECOVERY_CATCHUP_ASK_CAP).
    """

    operator_id = HexField(max_length=66)
    batch_identifier = HexField(max_length=66)
    asks = models.PositiveIntegerField(default=0)
    first_asked_at = models.DateTimeField()
    last_asked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["operator_id", "batch_identifier"], name="catchup_ask_once_per_batch"
            ),
        ]
        indexes = [BrinIndex(fields=["last_asked_at"], name="catchupask_last_asked_brin", autosummarize=True)]

    def __str__(self) -> str:
        return f"asked {self.operator_id[:10]} about {self.batch_identifier[:10]} x{self.asks}"


class ResponseTransaction(models.Model):
    """Each respondToTaskV2 transaction the standby signed and sent; a fee bump is a new row with the same nonce.

    Every hash stays known, so whichever of a nonce's transactions was mined is recognised as ours (a replacement
    that succeeded is a success, not a failure of the one it replaced).
    """

    batch_identifier = HexField(max_length=66)
    task = models.ForeignKey("recovery.RecoveryTask", null=True, blank=True, on_delete=models.SET_NULL)
    sender = HexField(max_length=42)
    nonce = models.BigIntegerField()
    tx_hash = HexField(max_length=66, unique=True)
    gas = models.BigIntegerField()
    max_fee_per_gas = WeiField()
    priority_fee_per_gas = WeiField()
    sent_at = models.DateTimeField(auto_now_add=True)
    # Set once its receipt is seen; a transaction whose nonce was taken by another stays unmined for ever.
    mined_block = models.BigIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(null=True, blank=True)
    fee_paid = WeiField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["batch_identifier", "nonce"])]

    def __str__(self) -> str:
        return f"response to {self.batch_identifier[:10]} nonce {self.nonce} ({self.tx_hash[:10]})"
