"""Quorum progress: signed stake vs total stake at the batch's taskCreatedBlock, at-risk, state-change rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from controlplane.changes import change_announce, progress_refreshed
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from ledger.selectors import operator_stakes_at_block
from liveness.models import OperatorLiveness, OperatorState
from progress.models import BatchProgress, BatchProgressChange, BatchProgressChangeKind
from progress.quorum import quorum_threshold, stake_holds_quorum

# What a refresh can move, compared before and after it (listeners report only real changes).
ProgressState = tuple[Decimal, Decimal, Decimal, bool, datetime | None, int]


def progress_state(progress: BatchProgress) -> ProgressState:
    return (
        Decimal(progress.total_stake),
        Decimal(progress.signed_stake),
        Decimal(progress.live_unsigned_stake),
        bool(progress.at_risk),
        progress.quorum_reached_at,
        int(progress.threshold_percentage),
    )


def operators_down_ids() -> set[str]:
    """Operators known to be down. Never-probed ones count as live: no false alarm before the first probe."""
    return set(
        OperatorLiveness.objects.filter(state=OperatorState.DOWN).values_list("operator_id", flat=True)
    )


def batch_progress_refresh(
    *, batch_identifier: str, down_ids: set[str] | None = None
) -> BatchProgress | None:
    """Recompute and persist one batch's progress; append a change row when quorum or risk flips."""
    batch = Batch.objects.filter(identifier=batch_identifier).first()
    if batch is None:
        return None
    stakes = operator_stakes_at_block(block_number=batch.task_created_block)
    total = sum(stakes.values(), Decimal(0))
    signed_ids = set(
        Signature.objects.filter(
            batch_identifier=batch_identifier, status=SignatureStatus.VERIFIED
        ).values_list("operator_id", flat=True)
    )
    signed = sum((stakes[i] for i in signed_ids if i in stakes), Decimal(0))
    unsigned = sorted(set(stakes) - signed_ids)
    down = operators_down_ids() if down_ids is None else down_ids
    live_unsigned = sum((stakes[i] for i in unsigned if i not in down), Decimal(0))
    threshold = quorum_threshold()
    reached = stake_holds_quorum(signed=signed, total=total, threshold=threshold)
    at_risk = (
        batch.status == BatchStatus.PENDING
        and not reached
        and total > 0  # no stake at the task block: nothing can sign it, and nothing is at risk
        and not stake_holds_quorum(signed=signed + live_unsigned, total=total, threshold=threshold)
    )
    with transaction.atomic():
        progress, _ = BatchProgress.objects.select_for_update().get_or_create(batch=batch)
        before = progress_state(progress)
        now = timezone.now()
        changes = []
        if reached and progress.quorum_reached_at is None:
            progress.quorum_reached_at = now
            progress.quorum_ms = max(0, int((now - batch.first_seen_at).total_seconds() * 1000))
            changes.append(BatchProgressChangeKind.QUORUM_REACHED)
        if at_risk != progress.at_risk:
            changes.append(BatchProgressChangeKind.AT_RISK if at_risk else BatchProgressChangeKind.RECOVERED)
        progress.total_stake = total
        progress.signed_stake = signed
        progress.live_unsigned_stake = live_unsigned
        progress.threshold_percentage = threshold
        progress.signed_operator_ids = sorted(i for i in signed_ids if i in stakes)
        progress.unsigned_operator_ids = unsigned
        progress.at_risk = at_risk
        progress.save()
        BatchProgressChange.objects.bulk_create(
            [
                BatchProgressChange(
                    batch_identifier=batch_identifier, kind=kind, signed_stake=signed, total_stake=total
                )
                for kind in changes
            ]
        )
        change_announce(progress_refreshed, identifier=batch_identifier, progress=progress, before=before)
    return progress


def progress_refresh_pending(*, limit: int = 1000) -> int:
    """Refresh the newest pending batches (liveness changes move their risk); returns how many."""
    down = operators_down_ids()
    identifiers = list(
        Batch.objects.filter(status=BatchStatus.PENDING)
        .order_by("-created_block")
        .values_list("identifier", flat=True)[:limit]
    )
    for identifier in identifiers:
        batch_progress_refresh(batch_identifier=identifier, down_ids=down)
    return len(identifiers)
