"""A batch's story in order: created, each signature, quorum, risk, replays, deliveries, verified on chain."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Min, Q

from monitoring.dashboard.formatting import eth_display, percent_display, short_hex
from monitoring.models import (
    Alert,
    Batch,
    BatchProgressChange,
    BatchProgressChangeKind,
    ChainEvent,
    Signature,
    SignatureStatus,
)

_CREATED = ("NewBatchV3", "NewBatchV2")


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    text: str
    # The operator a signature entry is about (the progress chart replays them).
    subject: str = ""

    @property
    def css(self) -> str:
        """``signature.accepted`` -> ``signature-accepted`` (the same rule as batch.js)."""
        return re.sub(r"[^a-z0-9]+", "-", self.kind.lower())


def _share(signed: Decimal, total: Decimal) -> str:
    return percent_display(signed * 100 / total) if total > 0 else "—"


def _signature_entries(signatures: Sequence[Signature], stakes: dict[str, Decimal]) -> list[TimelineEntry]:
    entries = []
    for s in signatures:
        who = short_hex(s.operator_id)
        stake = stakes.get(s.operator_id)
        weight = (
            f" ({eth_display(stake)} ETH)" if stake else " (no stake at the task's block: does not count)"
        )
        conflict = "; conflicts with another signature from this operator" if s.conflicting else ""
        entries.append(
            TimelineEntry(
                s.received_at, "signature.accepted", f"Signature from {who} accepted{weight}", s.operator_id
            )
        )
        # Never shown before its arrival, whatever clock wrote verified_at.
        decided = max(s.verified_at or s.received_at, s.received_at)
        if s.status == SignatureStatus.VERIFIED:
            text = f"Signature from {who} verified{conflict}"
            entries.append(TimelineEntry(decided, "signature.verified", text, s.operator_id))
        elif s.status == SignatureStatus.INVALID:
            reason = f": {s.status_reason}" if s.status_reason else ""
            text = f"Signature from {who} invalid{reason}{conflict}"
            entries.append(TimelineEntry(decided, "signature.invalid", text, s.operator_id))
        elif s.status == SignatureStatus.EXPIRED:
            entries.append(
                TimelineEntry(
                    s.received_at, "signature.expired", f"Signature from {who} expired", s.operator_id
                )
            )
    return entries


def _chain_entries(batch: Batch) -> list[TimelineEntry]:
    entries = []
    for event in ChainEvent.objects.filter(subject=batch.identifier).order_by("block_number", "log_index"):
        if event.name in _CREATED:
            text = f"Created at block {event.block_number} ({event.name}, tx {short_hex(event.transaction_hash)})"
            entries.append(TimelineEntry(event.ingested_at, "batch.created", text))
        elif event.name == "BatchVerified":
            text = (
                f"Aggregator responded; verified on chain at block {event.block_number} "
                f"(tx {short_hex(event.transaction_hash)})"
            )
            entries.append(TimelineEntry(event.ingested_at, "batch.verified", text))
        if event.removed and event.removed_at is not None:
            text = f"{event.name} at block {event.block_number} orphaned by a reorg"
            entries.append(TimelineEntry(event.removed_at, "batch.reorg", text))
    if not any(e.kind == "batch.created" for e in entries):
        text = f"Created at block {batch.created_block}"
        entries.append(TimelineEntry(batch.first_seen_at, "batch.created", text))
    return entries


def _progress_entries(batch: Batch, threshold: int) -> list[TimelineEntry]:
    texts = {
        BatchProgressChangeKind.QUORUM_REACHED: "Quorum reached: {share} of stake verified (threshold {t}%)",
        BatchProgressChangeKind.AT_RISK: "At risk: verified and live stake ({share} signed) below {t}%",
        BatchProgressChangeKind.RECOVERED: "No longer at risk ({share} signed)",
    }
    kinds = {
        BatchProgressChangeKind.QUORUM_REACHED: "quorum.reached",
        BatchProgressChangeKind.AT_RISK: "batch.at_risk",
        BatchProgressChangeKind.RECOVERED: "batch.recovered",
    }
    return [
        TimelineEntry(
            change.created_at,
            kinds.get(BatchProgressChangeKind(change.kind), change.kind),
            texts[BatchProgressChangeKind(change.kind)].format(
                share=_share(change.signed_stake, change.total_stake), t=threshold
            ),
        )
        for change in BatchProgressChange.objects.filter(batch_identifier=batch.identifier).order_by(
            "created_at"
        )
    ]


def _recovery_entries(batch: Batch) -> list[TimelineEntry]:
    from recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask, SignatureDelivery

    entries = []
    tasks = RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY, subject=batch.identifier).order_by("id")
    for task in tasks:
        reason = f" ({task.reason})" if task.reason else ""
        text = f"Replay #{task.id} requested by {task.requested_by}{reason}"
        entries.append(TimelineEntry(task.created_at, "recovery.task", text))
        if task.finished_at is not None:
            verb = "done" if task.status == RecoveryStatus.DONE else str(task.status)
            detail = f": {task.last_error}" if task.last_error and task.status != RecoveryStatus.DONE else ""
            text = f"Replay #{task.id} {verb} after {task.attempts} attempt(s){detail}"
            entries.append(TimelineEntry(task.finished_at, "recovery.task", text))
        elif task.last_error:
            text = f"Replay #{task.id} retrying ({task.attempts} attempt(s)): {task.last_error}"
            entries.append(TimelineEntry(task.updated_at, "recovery.task", text))
    in_plan = Q(plan__batches__contains=[{"identifier": batch.identifier}])
    for run in RecoveryRun.objects.filter(Q(scope=batch.identifier) | in_plan).order_by("id"):
        what = "Dry run" if run.dry_run else "Replay run"
        scope = "this batch" if run.scope == batch.identifier else run.scope
        text = f"{what} #{run.id} by {run.requested_by} ({scope}): {run.outcome}"
        entries.append(TimelineEntry(run.created_at, "recovery.run", text))
    deliveries = (
        SignatureDelivery.objects.filter(batch_identifier=batch.identifier)
        .values("boot_id")
        .annotate(n=Count("id"), first=Min("delivered_at"))
        .order_by("first")
    )
    for row in deliveries:
        text = f"{row['n']} signature(s) delivered to aggregator boot {row['boot_id'][:8]}"
        entries.append(TimelineEntry(row["first"], "aggregator.delivery", text))
    return entries


def _alert_entries(batch: Batch) -> list[TimelineEntry]:
    entries = []
    for alert in Alert.objects.filter(subject=batch.identifier).order_by("opened_at"):
        entries.append(TimelineEntry(alert.opened_at, "alert.opened", f"Alert opened: {alert.summary}"))
        if alert.resolved_at is not None:
            resolution = f": {alert.resolution}" if alert.resolution else ""
            text = f"Alert resolved ({alert.get_kind_display()}){resolution}"
            entries.append(TimelineEntry(alert.resolved_at, "alert.resolved", text))
    return entries


def batch_timeline(
    *, batch: Batch, signatures: Sequence[Signature], stakes: dict[str, Decimal], threshold: int
) -> list[TimelineEntry]:
    """Every event of the batch, oldest first (six queries; the signatures are passed in)."""
    entries = [
        *_chain_entries(batch),
        *_signature_entries(signatures, stakes),
        *_progress_entries(batch, threshold),
        *_recovery_entries(batch),
        *_alert_entries(batch),
    ]
    order = {"batch.created": 0}
    return sorted(entries, key=lambda e: (e.at, order.get(e.kind, 1)))
