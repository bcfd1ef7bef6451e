"""Reads for the dashboard's batch pages and overview: a few queries per page, never one per row.

The ``*_snapshot_data`` functions return exactly the JSON the live sockets send as their snapshot, so a page
rendered on the server and the same page after a resync show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min, Q, QuerySet

from dashboard.timeline import TimelineEntry, batch_signatures_by_operator, batch_timeline
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, Block, IngestCursor
from ledger.selectors import operator_stakes_at_block, stakes_at_block_sql
from liveness.models import OperatorLiveness, OperatorState
from progress.models import BatchProgress
from progress.quorum import quorum_threshold, stake_holds_quorum, stake_percent

# A signature counts toward a batch once verified; a pending one is stake that is probably on its way.
_COUNTED = (SignatureStatus.PENDING, SignatureStatus.VERIFIED)


def _wei(value: Decimal | int) -> str:
    return str(int(value))


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- Progress ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Stake-weighted progress of one batch: verified stake, stake whose signature awaits verification."""

    total_stake: Decimal
    signed_stake: Decimal
    pending_stake: Decimal
    threshold_percentage: int
    at_risk: bool = False
    quorum_reached_at: datetime | None = None

    def _percent(self, stake: Decimal) -> float:
        return stake_percent(part=stake, total=self.total_stake)

    @property
    def signed_percent(self) -> float:
        return self._percent(self.signed_stake)

    @property
    def pending_percent(self) -> float:
        return self._percent(self.pending_stake)

    @property
    def quorum_reached(self) -> bool:
        if self.quorum_reached_at is not None:
            return True
        return stake_holds_quorum(
            signed=self.signed_stake, total=self.total_stake, threshold=self.threshold_percentage
        )


_PROGRESS_SQL = """
WITH b AS (
    SELECT identifier, task_created_block FROM {batch} WHERE identifier = ANY(%(ids)s)
),
stakes AS (
    SELECT b.identifier, st.operator_id, st.stake
    FROM b CROSS JOIN LATERAL ({stakes}) st
    WHERE st.stake > 0
),
signed AS (
    SELECT batch_identifier, operator_id, bool_or(status = %(verified)s) AS verified
    FROM {signature}
    WHERE batch_identifier = ANY(%(ids)s) AND status = ANY(%(counted)s)
    GROUP BY batch_identifier, operator_id
)
SELECT s.identifier,
    SUM(s.stake),
    COALESCE(SUM(s.stake) FILTER (WHERE g.verified), 0),
    COALESCE(SUM(s.stake) FILTER (WHERE NOT g.verified), 0)
FROM stakes s
LEFT JOIN signed g ON g.batch_identifier = s.identifier AND g.operator_id = s.operator_id
GROUP BY s.identifier
"""


def batch_stakes(*, identifiers: Sequence[str]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """(total, verified, pending) stake at each batch's taskCreatedBlock, in one query for all of them.

    An operator with a verified signature counts as verified even if it also sent a pending one.
    """
    if not identifiers:
        return {}
    quote = connection.ops.quote_name
    sql = _PROGRESS_SQL.format(
        batch=quote(Batch._meta.db_table),
        stakes=stakes_at_block_sql(block="b.task_created_block"),
        signature=quote(Signature._meta.db_table),
    )
    params: dict[str, Any] = {
        "ids": list(identifiers),
        "verified": SignatureStatus.VERIFIED.value,
        "counted": [str(status) for status in _COUNTED],
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: (Decimal(row[1]), Decimal(row[2]), Decimal(row[3])) for row in cursor.fetchall()}


def _progress_row(batch: Batch) -> BatchProgress | None:
    try:
        return batch.progress
    except BatchProgress.DoesNotExist:
        return None


def _progress(batch: Batch, stakes: tuple[Decimal, Decimal, Decimal] | None) -> Progress:
    total, signed, pending = stakes or (Decimal(0), Decimal(0), Decimal(0))
    row = _progress_row(batch)
    return Progress(
        total_stake=total,
        signed_stake=signed,
        pending_stake=pending,
        threshold_percentage=row.threshold_percentage if row else quorum_threshold(),
        at_risk=bool(row and row.at_risk and batch.status == BatchStatus.PENDING),
        quorum_reached_at=row.quorum_reached_at if row else None,
    )


# --- Batches -----------------------------------------------------------------------------------


def chain_head_block() -> int | None:
    """The highest block the ingester has seen (a header or a cursor); None before it has run."""
    block = Block.objects.filter(removed=False).aggregate(top=Max("number"))["top"]
    cursor = IngestCursor.objects.aggregate(top=Max("block_number"))["top"]
    known = [b for b in (block, cursor) if b is not None]
    return max(known) if known else None


def ingested_head_block() -> int | None:
    """The block every contract is ingested up to (the slowest cursor): what "stalled" is measured against,
    as the alert rule does, so a batch whose BatchVerified is not ingested yet never looks stalled."""
    low: int | None = IngestCursor.objects.aggregate(low=Min("block_number"))["low"]
    return low


def stalled_blocks() -> int:
    """A pending batch created more than this many blocks before the ingested head is stalled."""
    return int(settings.ALERT_BATCH_STALLED_BLOCKS)


def stalled_q(*, ingested: int | None) -> Q:
    if ingested is None:
        return Q(pk__in=[])
    return Q(status=BatchStatus.PENDING, created_block__lt=ingested - stalled_blocks())


BATCH_FLAGS = ("at_risk", "stalled", "quorum")


def batch_filtered(
    *,
    status: str | None = None,
    flag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Batch]:
    """Batches newest first, narrowed by status, a flag (at_risk, stalled, quorum) and when they were seen."""
    batches = Batch.objects.select_related("progress").order_by("-created_block", "-id")
    if status:
        batches = batches.filter(status=status)
    if flag == "at_risk":
        batches = batches.filter(status=BatchStatus.PENDING, progress__at_risk=True)
    elif flag == "stalled":
        batches = batches.filter(stalled_q(ingested=ingested_head_block()))
    elif flag == "quorum":
        batches = batches.filter(progress__quorum_reached_at__isnull=False)
    if since is not None:
        batches = batches.filter(first_seen_at__gte=since)
    if until is not None:
        batches = batches.filter(first_seen_at__lt=until)
    return batches


@dataclass(frozen=True)
class BatchRow:
    batch: Batch
    progress: Progress

    def as_json(self) -> dict[str, Any]:
        return {
            "identifier": self.batch.identifier,
            "status": self.batch.status,
            "created_block": self.batch.created_block,
            "signed_percent": round(self.progress.signed_percent, 4),
            "pending_percent": round(self.progress.pending_percent, 4),
            "at_risk": self.progress.at_risk,
            "quorum_reached": self.progress.quorum_reached,
        }


def batch_rows(*, batches: Sequence[Batch]) -> list[BatchRow]:
    """Rows with their progress bars: one query for the stake of every batch on the page."""
    stakes = batch_stakes(identifiers=[b.identifier for b in batches])
    return [BatchRow(batch=b, progress=_progress(b, stakes.get(b.identifier))) for b in batches]


@dataclass(frozen=True)
class Signer:
    operator_id: str
    stake: Decimal
    status: str  # verified | pending
    at: datetime | None


@dataclass(frozen=True)
class NonSigner:
    operator_id: str
    stake: Decimal
    state: str  # the operator's liveness: up | degraded | down | unknown
    invalid: bool  # it sent a signature that failed verification


@dataclass(frozen=True)
class BatchDetail:
    batch: Batch
    progress: Progress
    signers: list[Signer]
    non_signers: list[NonSigner]
    timeline: list[TimelineEntry]
    # Signatures for the batch by operators that had no stake at its taskCreatedBlock: they cannot count.
    unstaked_signers: list[str] = field(default_factory=list)

    @property
    def chart(self) -> dict[str, list[float]]:
        """Progress over time for uPlot: seconds since the epoch, verified % and verified + pending %."""
        return _progress_series(self)

    def as_snapshot(self) -> dict[str, Any]:
        p = self.progress
        return {
            "identifier": self.batch.identifier,
            "status": self.batch.status,
            "created_block": self.batch.created_block,
            "total_stake": _wei(p.total_stake),
            "signed_stake": _wei(p.signed_stake),
            "pending_stake": _wei(p.pending_stake),
            "threshold_percentage": p.threshold_percentage,
            "signed_percent": round(p.signed_percent, 4),
            "pending_percent": round(p.pending_percent, 4),
            "at_risk": p.at_risk,
            "quorum_reached_at": iso_or_none(p.quorum_reached_at),
            "verified_at": iso_or_none(_verified_at(self.timeline)),
            "signers": [
                {"operator_id": s.operator_id, "stake": _wei(s.stake), "status": s.status}
                for s in self.signers
            ],
            "non_signers": [
                {"operator_id": n.operator_id, "stake": _wei(n.stake), "state": n.state}
                for n in self.non_signers
            ],
            "timeline": [{"at": e.at.isoformat(), "kind": e.kind, "text": e.text} for e in self.timeline],
        }


def _verified_at(timeline: list[TimelineEntry]) -> datetime | None:
    return next((e.at for e in timeline if e.kind == "batch.verified"), None)


def _progress_series(detail: BatchDetail) -> dict[str, list[float]]:
    total = detail.progress.total_stake
    start = detail.batch.first_seen_at
    stakes = {s.operator_id: s.stake for s in detail.signers}
    events: list[tuple[datetime, str, str]] = []
    for entry in detail.timeline:
        if entry.kind in ("signature.accepted", "signature.verified") and entry.subject in stakes:
            events.append((entry.at, entry.kind, entry.subject))
    accepted: set[str] = set()
    verified: set[str] = set()
    xs, signed, reached = [start.timestamp()], [0.0], [0.0]
    for at, kind, operator_id in sorted(events):
        (verified if kind == "signature.verified" else accepted).add(operator_id)
        if total <= 0:
            continue
        xs.append(max(at, start).timestamp())
        signed.append(stake_percent(part=sum((stakes[o] for o in verified), Decimal(0)), total=total))
        reached.append(
            stake_percent(part=sum((stakes[o] for o in accepted | verified), Decimal(0)), total=total)
        )
    return {"x": xs, "signed": signed, "accepted": reached}


def batch_get(*, identifier: str) -> Batch | None:
    return Batch.objects.select_related("progress").filter(identifier=identifier).first()


def _liveness_states(operator_ids: Sequence[str]) -> dict[str, str]:
    return dict(
        OperatorLiveness.objects.filter(operator_id__in=list(operator_ids)).values_list(
            "operator_id", "state"
        )
    )


def batch_detail(*, identifier: str) -> BatchDetail | None:
    """Everything the batch page shows, from about eight queries whatever the number of operators."""
    batch = batch_get(identifier=identifier)
    if batch is None:
        return None
    stakes = operator_stakes_at_block(block_number=batch.task_created_block)
    signatures = batch_signatures_by_operator(identifier=batch.identifier)
    verified_at: dict[str, datetime | None] = {}
    pending_at: dict[str, datetime] = {}
    invalid: set[str] = set()
    for s in signatures:
        if s.verified_at is not None:
            verified_at[s.operator_id] = s.verified_at
        elif s.pending_at is not None:
            pending_at[s.operator_id] = s.pending_at
        if s.invalid:
            invalid.add(s.operator_id)
    signers: list[Signer] = []
    for operator_id, stake in stakes.items():
        if operator_id in verified_at:
            signers.append(Signer(operator_id, stake, "verified", verified_at[operator_id]))
        elif operator_id in pending_at:
            signers.append(Signer(operator_id, stake, "pending", pending_at[operator_id]))
    signers.sort(key=lambda s: (-s.stake, s.operator_id))
    signed_ids = {s.operator_id for s in signers}
    states = _liveness_states([o for o in stakes if o not in signed_ids])
    non_signers = sorted(
        (
            NonSigner(o, stake, states.get(o, OperatorState.UNKNOWN), o in invalid)
            for o, stake in stakes.items()
            if o not in signed_ids
        ),
        key=lambda n: (-n.stake, n.operator_id),
    )
    total = sum(stakes.values(), Decimal(0))
    signed = sum((s.stake for s in signers if s.status == "verified"), Decimal(0))
    pending = sum((s.stake for s in signers if s.status == "pending"), Decimal(0))
    progress = _progress(batch, (total, signed, pending))
    unstaked = sorted({s.operator_id for s in signatures if s.operator_id not in stakes})
    return BatchDetail(
        batch=batch,
        progress=progress,
        signers=signers,
        non_signers=non_signers,
        timeline=batch_timeline(
            batch=batch, signatures=signatures, stakes=stakes, threshold=progress.threshold_percentage
        ),
        unstaked_signers=unstaked,
    )


def batch_snapshot_data(*, identifier: str) -> dict[str, Any] | None:
    """The batch socket's snapshot ``data``; None for an unknown batch."""
    detail = batch_detail(identifier=identifier)
    return detail.as_snapshot() if detail else None
