"""Snapshot selectors for the live sockets: the whole state a client starts from (and returns to after a gap).

One copy of each number: the dashboard's selectors build the same JSON for the server-rendered pages, so a page and
the same page after a resync always agree; these functions are the sockets' names for them. Reads Postgres only
(no RPC): the chain head is the highest block the ingester recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ledger.models import Batch, BatchStatus, Operator
from progress.models import BatchProgress
from progress.quorum import quorum_threshold, stake_percent


def live_overview_snapshot() -> dict[str, Any]:
    """``data`` of the ``ws/quorum/`` snapshot: counters, ingest and aggregator status, recent batches, operators."""
    from dashboard.overview_selectors import overview_snapshot_data

    return overview_snapshot_data()


def live_batch_snapshot(*, identifier: str) -> dict[str, Any] | None:
    """``data`` of the ``ws/batches/<identifier>/`` snapshot; None while the batch is not in the ledger."""
    from dashboard.selectors import batch_snapshot_data

    return batch_snapshot_data(identifier=identifier.lower())


def _percent(part: Decimal, total: Decimal) -> float:
    return round(stake_percent(part=part, total=total), 4)


def live_progress_data_many(*, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each batch's progress as a ``progress`` message carries it: absolute values, the snapshot's field names.

    Two queries for any number of batches; batches that are gone (a reorg) are left out."""
    from dashboard.selectors import batch_stakes

    batches = list(Batch.objects.filter(identifier__in=set(identifiers)).select_related("progress"))
    stakes = batch_stakes(identifiers=[batch.identifier for batch in batches])
    data = {}
    for batch in batches:
        total, signed, pending = stakes.get(batch.identifier, (Decimal(0), Decimal(0), Decimal(0)))
        try:
            progress: BatchProgress | None = batch.progress
        except BatchProgress.DoesNotExist:
            progress = None
        threshold = progress.threshold_percentage if progress else quorum_threshold()
        reached_at = progress.quorum_reached_at if progress else None
        data[batch.identifier] = {
            "identifier": batch.identifier,
            "status": batch.status,
            "total_stake": str(int(total)),
            "signed_stake": str(int(signed)),
            "pending_stake": str(int(pending)),
            "live_unsigned_stake": str(int(progress.live_unsigned_stake)) if progress else "0",
            "threshold_percentage": threshold,
            "signed_percent": _percent(signed, total),
            "pending_percent": _percent(pending, total),
            "at_risk": bool(progress and progress.at_risk and batch.status == BatchStatus.PENDING),
            "quorum_reached": reached_at is not None,
            "quorum_reached_at": reached_at.isoformat() if reached_at else None,
        }
    return data


def live_stake_online_percent() -> float | None:
    """Share of the registered stake held by operators that are up or degraded now; None without any stake."""
    from ledger.selectors import operator_total_current_stake
    from liveness.selectors import operators_live_ids

    total = operator_total_current_stake()
    if total <= 0:
        return None
    live = Operator.objects.filter(registered=True, operator_id__in=operators_live_ids()).values_list(
        "current_stake", flat=True
    )
    return _percent(sum((Decimal(s) for s in live), Decimal(0)), total)
