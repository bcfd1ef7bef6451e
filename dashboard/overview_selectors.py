"""Reads for the overview page (and the quorum socket's snapshot): a dozen small queries in all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q

from alerts.models import Alert, AlertState
from controlplane.rowcounts import rowcounts
from dashboard.operator_selectors import network_liveness
from dashboard.selectors import (
    BatchRow,
    batch_filtered,
    batch_rows,
    chain_head_block,
    iso_or_none,
    stalled_q,
)
from ledger.models import Batch, BatchStatus, IngestCursor, IngestIncident, IngestIncidentKind

RECENT_BATCHES = 10
LATEST_ALERTS = 10


@dataclass(frozen=True)
class BatchCounts:
    pending: int
    verified: int
    at_risk: int
    stalled: int


@dataclass(frozen=True)
class IngestLag:
    cursor_block: int | None
    head_block: int | None
    updated_at: datetime | None

    @property
    def lag_blocks(self) -> int | None:
        if self.cursor_block is None or self.head_block is None:
            return None
        return max(0, self.head_block - self.cursor_block)


@dataclass(frozen=True)
class AggregatorStatus:
    boot_id: str | None
    since: datetime | None
    last_seen_at: datetime | None
    url: str = ""


@dataclass(frozen=True)
class Overview:
    stake_online_percent: float | None
    operators: dict[str, int]
    batches: BatchCounts
    ingest: IngestLag
    aggregator: AggregatorStatus
    recovery: dict[str, int]
    alerts_open: int
    alerts: list[Alert]
    recent_batches: list[BatchRow]
    operators_state: list[dict[str, Any]]
    last_incident: IngestIncident | None = None

    def as_snapshot(self) -> dict[str, Any]:
        return {
            "stake_online_percent": (
                None if self.stake_online_percent is None else round(self.stake_online_percent, 4)
            ),
            "operators": dict(self.operators),
            "batches": {
                "pending": self.batches.pending,
                "verified": self.batches.verified,
                "at_risk": self.batches.at_risk,
                "stalled": self.batches.stalled,
            },
            "ingest": {
                "cursor_block": self.ingest.cursor_block,
                "head_block": self.ingest.head_block,
                "lag_blocks": self.ingest.lag_blocks,
            },
            "aggregator": {"boot_id": self.aggregator.boot_id, "since": iso_or_none(self.aggregator.since)},
            "recovery": dict(self.recovery),
            "alerts_open": self.alerts_open,
            "recent_batches": [row.as_json() for row in self.recent_batches],
            "operators_state": [
                {"operator_id": o["operator_id"], "state": o["state"], "since": iso_or_none(o["since"])}
                for o in self.operators_state
            ],
        }


def batch_counts(*, ingested: int | None) -> BatchCounts:
    # Pending batches are few (an index finds them); verified ones are counted by the writes, never scanned.
    counts = Batch.objects.filter(status=BatchStatus.PENDING).aggregate(
        pending=Count("id"),
        at_risk=Count("id", filter=Q(progress__at_risk=True)),
        stalled=Count("id", filter=stalled_q(ingested=ingested)),
    )
    verified = rowcounts(prefix="batches").get(BatchStatus.VERIFIED, 0)
    return BatchCounts(verified=verified, **{k: int(v or 0) for k, v in counts.items()})


def ingest_lag(*, head: int | None) -> IngestLag:
    """The slowest contract cursor against the highest block seen: how far the ledger trails the chain."""
    cursors = IngestCursor.objects.aggregate(low=Min("block_number"), updated=Max("updated_at"))
    return IngestLag(cursor_block=cursors["low"], head_block=head, updated_at=cursors["updated"])


def aggregator_status() -> AggregatorStatus:
    from recovery.models import AggregatorBoot

    boot = AggregatorBoot.objects.order_by("-last_seen_at").first()
    if boot is None:
        return AggregatorStatus(boot_id=None, since=None, last_seen_at=None)
    return AggregatorStatus(
        boot_id=boot.boot_id, since=boot.first_seen_at, last_seen_at=boot.last_seen_at, url=boot.url
    )


def recovery_in_flight() -> dict[str, int]:
    from recovery.models import RecoveryStatus, RecoveryTask

    # Only open tasks, through the status index: finished ones are most of the table.
    counts = RecoveryTask.objects.filter(
        status__in=[RecoveryStatus.PENDING, RecoveryStatus.RUNNING]
    ).aggregate(
        pending=Count("id", filter=Q(status=RecoveryStatus.PENDING)),
        running=Count("id", filter=Q(status=RecoveryStatus.RUNNING)),
    )
    return {"pending": int(counts["pending"] or 0), "running": int(counts["running"] or 0)}


def alerts_latest(*, limit: int = LATEST_ALERTS) -> tuple[int, list[Alert]]:
    """How many alerts are open, and the latest ones: open ones first (most severe first), then resolved ones.

    Resolved ones only of the current chain: those opened before the last ledger reset were about a chain that
    no longer exists (the API keeps the whole history).
    """
    from alerts.selectors import alert_list, alert_open_counts, alerts_open

    latest = list(alerts_open()[:limit])
    if len(latest) < limit:
        reset = (
            IngestIncident.objects.filter(kind=IngestIncidentKind.LEDGER_RESET)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        latest += list(alert_list(state=AlertState.RESOLVED, since=reset)[: limit - len(latest)])
    return sum(alert_open_counts().values()), latest


def overview_get() -> Overview:
    """The overview page (and the quorum socket's snapshot): about a dozen queries in all."""
    head = chain_head_block()
    ingest = ingest_lag(head=head)
    liveness = network_liveness()
    recent = list(batch_filtered()[:RECENT_BATCHES])
    alerts_open, alerts = alerts_latest()
    return Overview(
        stake_online_percent=liveness.stake_online_percent,
        operators=liveness.counts,
        batches=batch_counts(ingested=ingest.cursor_block),
        ingest=ingest,
        aggregator=aggregator_status(),
        recovery=recovery_in_flight(),
        alerts_open=alerts_open,
        alerts=alerts,
        recent_batches=batch_rows(batches=recent),
        operators_state=liveness.states,
        last_incident=IngestIncident.objects.order_by("-created_at", "-id").first(),
    )


def overview_snapshot_data() -> dict[str, Any]:
    """The quorum socket's snapshot ``data``: the overview page's numbers, as JSON."""
    return overview_get().as_snapshot()
