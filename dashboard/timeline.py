"""A batch's story in order: created, each signature, quorum, risk, replays, deliveries, verified on chain."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Min, Q

from alerts.models import Alert
from dashboard.formatting import eth_display, percent_display, short_hex
from ledger.models import Batch, ChainEvent
from progress.models import BatchProgressChange, BatchProgressChangeKind

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


@dataclass(frozen=True)
class OperatorSignatures:
    """One operator's signatures for a batch, summed up in SQL: however many are posted in its name (forgers
    can keep posting), the page and its socket read one row per operator."""

    operator_id: str
    verified_received_at: datetime | None
    verified_at: datetime | None
    pending_at: datetime | None
    invalid: int
    invalid_sources: int
    last_invalid_at: datetime | None
    last_invalid_reason: str
    expired_at: datetime | None
    conflicting: bool


_BY_OPERATOR = """
SELECT operator_id,
    min(received_at) FILTER (WHERE status = 'verified'),
    min(greatest(coalesce(verified_at, received_at), received_at)) FILTER (WHERE status = 'verified'),
    min(received_at) FILTER (WHERE status = 'pending'),
    count(*) FILTER (WHERE status = 'invalid'),
    count(DISTINCT source) FILTER (WHERE status = 'invalid'),
    max(greatest(coalesce(verified_at, received_at), received_at)) FILTER (WHERE status = 'invalid'),
    (array_agg(status_reason ORDER BY received_at DESC, id DESC) FILTER (WHERE status = 'invalid'))[1],
    min(received_at) FILTER (WHERE status = 'expired'),
    bool_or(conflicting)
FROM monitoring_signature WHERE batch_identifier = %s GROUP BY operator_id ORDER BY operator_id
"""


def batch_signatures_by_operator(*, identifier: str) -> list[OperatorSignatures]:
    with connection.cursor() as cursor:
        cursor.execute(_BY_OPERATOR, [identifier])
        return [
            OperatorSignatures(
                operator_id=row[0],
                verified_received_at=row[1],
                verified_at=row[2],
                pending_at=row[3],
                invalid=int(row[4]),
                invalid_sources=int(row[5]),
                last_invalid_at=row[6],
                last_invalid_reason=row[7] or "",
                expired_at=row[8],
                conflicting=bool(row[9]),
            )
            for row in cursor.fetchall()
        ]


def _signature_entries(
    summaries: Sequence[OperatorSignatures], stakes: dict[str, Decimal]
) -> list[TimelineEntry]:
    entries = []
    for s in summaries:
        who = short_hex(s.operator_id)
        stake = stakes.get(s.operator_id)
        weight = (
            f" ({eth_display(stake)} ETH)" if stake else " (no stake at the task's block: does not count)"
        )
        accepted = s.verified_received_at or s.pending_at
        if accepted is not None:
            text = f"Signature from {who} accepted{weight}"
            entries.append(TimelineEntry(accepted, "signature.accepted", text, s.operator_id))
        if s.verified_at is not None:
            conflict = (
                "; conflicts with another verified signature from this operator" if s.conflicting else ""
            )
            text = f"Signature from {who} verified{conflict}"
            entries.append(TimelineEntry(s.verified_at, "signature.verified", text, s.operator_id))
        if s.invalid and s.last_invalid_at is not None:
            reason = f": {s.last_invalid_reason}" if s.last_invalid_reason else ""
            many = f"{s.invalid} signatures" if s.invalid > 1 else "A signature"
            sources = f" from {s.invalid_sources} addresses" if s.invalid_sources > 1 else ""
            text = f"{many} in {who}'s name{sources} invalid{reason}"
            entries.append(TimelineEntry(s.last_invalid_at, "signature.invalid", text, s.operator_id))
        if s.expired_at is not None and accepted is None:
            text = f"Signature from {who} expired"
            entries.append(TimelineEntry(s.expired_at, "signature.expired", text, s.operator_id))
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
    tasks = RecoveryTask.objects.filter(
        kind__in=[RecoveryKind.REPLAY, RecoveryKind.RESPOND], subject=batch.identifier
    ).order_by("id")
    for task in tasks:
        name = "Replay" if task.kind == RecoveryKind.REPLAY else "Standby response"
        reason = f" ({task.reason})" if task.reason else ""
        text = f"{name} #{task.id} requested by {task.requested_by}{reason}"
        entries.append(TimelineEntry(task.created_at, "recovery.task", text))
        if task.finished_at is not None and task.result.get("answered_by") == "standby":
            text = f"Answered by the standby: {name.lower()} #{task.id}, tx {task.result.get('tx_hash')}"
            entries.append(TimelineEntry(task.finished_at, "recovery.standby", text))
        elif task.finished_at is not None:
            verb = "done" if task.status == RecoveryStatus.DONE else str(task.status)
            detail = f": {task.last_error}" if task.last_error and task.status != RecoveryStatus.DONE else ""
            text = f"{name} #{task.id} {verb} after {task.attempts} attempt(s){detail}"
            entries.append(TimelineEntry(task.finished_at, "recovery.task", text))
        elif task.last_error:
            text = f"{name} #{task.id} retrying ({task.attempts} attempt(s)): {task.last_error}"
            entries.append(TimelineEntry(task.updated_at, "recovery.task", text))
    in_plan = Q(plan__batches__contains=[{"identifier": batch.identifier}])
    for run in RecoveryRun.objects.filter(Q(scope=batch.identifier) | in_plan).order_by("id"):
        what = (
            "Dry run"
            if run.dry_run
            else ("Standby run" if run.kind == RecoveryKind.RESPOND else "Replay run")
        )
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
    *, batch: Batch, signatures: Sequence[OperatorSignatures], stakes: dict[str, Decimal], threshold: int
) -> list[TimelineEntry]:
    """Every event of the batch, oldest first (six queries; the signatures, per operator, are passed in)."""
    entries = [
        *_chain_entries(batch),
        *_signature_entries(signatures, stakes),
        *_progress_entries(batch, threshold),
        *_recovery_entries(batch),
        *_alert_entries(batch),
    ]
    order = {"batch.created": 0}
    return sorted(entries, key=lambda e: (e.at, order.get(e.kind, 1)))
