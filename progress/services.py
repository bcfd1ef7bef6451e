"""Quorum progress: signed stake vs total stake at the batch's taskCreatedBlock, at-risk, state-change rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from controlplane.changes import change_announce, progress_refreshed
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from ledger.selectors import operator_stakes_at_blocks
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
    return batches_progress_refresh(batch_identifiers=[batch_identifier], down_ids=down_ids).get(
        batch_identifier
    )


def batches_progress_refresh(
    *, batch_identifiers: Sequence[str], down_ids: set[str] | None = None
) -> dict[str, BatchProgress]:
    """``batch_progress_refresh`` for several batches (a verifier pass's, the pending ones) in a few queries, not
    a few per batch. Batches not in the ledger are left out of the answer."""
    batches = {
        batch.identifier: batch
        for batch in Batch.objects.filter(identifier__in=set(batch_identifiers)).order_by("id")
    }
    if not batches:
        return {}
    stakes_at = operator_stakes_at_blocks(block_numbers=[b.task_created_block for b in batches.values()])
    signed_by: dict[str, set[str]] = {identifier: set() for identifier in batches}
    for identifier, operator_id in Signature.objects.filter(
        batch_identifier__in=list(batches), status=SignatureStatus.VERIFIED
    ).values_list("batch_identifier", "operator_id"):
        signed_by[identifier].add(operator_id)
    down = operators_down_ids() if down_ids is None else down_ids
    threshold = quorum_threshold()
    refreshed: dict[str, BatchProgress] = {}
    with transaction.atomic():
        BatchProgress.objects.bulk_create(
            [BatchProgress(batch=batch) for batch in batches.values()], ignore_conflicts=True
        )
        # Locked in one order (the batch's), so that two refreshes of overlapping batches never deadlock.
        progresses = {
            progress.batch_id: progress
            for progress in BatchProgress.objects.select_for_update()
            .filter(batch_id__in=[b.id for b in batches.values()])
            .order_by("batch_id")
        }
        now = timezone.now()
        changes: list[BatchProgressChange] = []
        befores: dict[str, ProgressState] = {}
        for identifier, batch in batches.items():
            stakes = stakes_at[batch.task_created_block]
            total = sum(stakes.values(), Decimal(0))
            signed_ids = signed_by[identifier]
            signed = sum((stakes[i] for i in signed_ids if i in stakes), Decimal(0))
            unsigned = sorted(set(stakes) - signed_ids)
            live_unsigned = sum((stakes[i] for i in unsigned if i not in down), Decimal(0))
            reached = stake_holds_quorum(signed=signed, total=total, threshold=threshold)
            at_risk = (
                batch.status == BatchStatus.PENDING
                and not reached
                and total > 0  # no stake at the task block: nothing can sign it, and nothing is at risk
                and not stake_holds_quorum(signed=signed + live_unsigned, total=total, threshold=threshold)
            )
            progress = progresses[batch.id]
            befores[identifier] = progress_state(progress)
            kinds = []
            if reached and progress.quorum_reached_at is None:
                progress.quorum_reached_at = now
                progress.quorum_ms = max(0, int((now - batch.first_seen_at).total_seconds() * 1000))
                kinds.append(BatchProgressChangeKind.QUORUM_REACHED)
            if at_risk != progress.at_risk:
                kinds.append(
                    BatchProgressChangeKind.AT_RISK if at_risk else BatchProgressChangeKind.RECOVERED
                )
            progress.total_stake = total
            progress.signed_stake = signed
            progress.live_unsigned_stake = live_unsigned
            progress.threshold_percentage = threshold
            progress.signed_operator_ids = sorted(i for i in signed_ids if i in stakes)
            progress.unsigned_operator_ids = unsigned
            progress.at_risk = at_risk
            progress.updated_at = now
            changes += [
                BatchProgressChange(
                    batch_identifier=identifier, kind=kind, signed_stake=signed, total_stake=total
                )
                for kind in kinds
            ]
            refreshed[identifier] = progress
        _progress_write(progresses=list(refreshed.values()))
        BatchProgressChange.objects.bulk_create(changes)
        for identifier, progress in refreshed.items():
            change_announce(
                progress_refreshed, identifier=identifier, progress=progress, before=befores[identifier]
            )
    return refreshed


# Every refreshed row in one statement: Django's bulk_update builds a CASE per field and row in Python, which cost
# more than the rest of a verifier pass's refresh.
_WRITE = f"""
UPDATE {BatchProgress._meta.db_table} p SET total_stake = v.total_stake, signed_stake = v.signed_stake,
    live_unsigned_stake = v.live_unsigned_stake, threshold_percentage = v.threshold_percentage,
    signed_operator_ids = v.signed_operator_ids::jsonb, unsigned_operator_ids = v.unsigned_operator_ids::jsonb,
    quorum_reached_at = v.quorum_reached_at, quorum_ms = v.quorum_ms, at_risk = v.at_risk,
    updated_at = v.updated_at
FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[], %s::numeric[], %s::smallint[], %s::text[], %s::text[],
    %s::timestamptz[], %s::bigint[], %s::boolean[], %s::timestamptz[])
    AS v(id, total_stake, signed_stake, live_unsigned_stake, threshold_percentage, signed_operator_ids,
        unsigned_operator_ids, quorum_reached_at, quorum_ms, at_risk, updated_at)
WHERE p.id = v.id
"""


def _progress_write(*, progresses: list[BatchProgress]) -> None:
    if not progresses:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _WRITE,
            [
                [p.id for p in progresses],
                [p.total_stake for p in progresses],
                [p.signed_stake for p in progresses],
                [p.live_unsigned_stake for p in progresses],
                [p.threshold_percentage for p in progresses],
                [json.dumps(p.signed_operator_ids) for p in progresses],
                [json.dumps(p.unsigned_operator_ids) for p in progresses],
                [p.quorum_reached_at for p in progresses],
                [p.quorum_ms for p in progresses],
                [p.at_risk for p in progresses],
                [p.updated_at for p in progresses],
            ],
        )


def progress_refresh_pending(*, limit: int = 1000) -> int:
    """Refresh the newest pending batches (liveness changes move their risk); returns how many."""
    down = operators_down_ids()
    identifiers = list(
        Batch.objects.filter(status=BatchStatus.PENDING)
        .order_by("-created_block")
        .values_list("identifier", flat=True)[:limit]
    )
    # In chunks: each transaction locks its batches' progress rows, which a verifier pass may be waiting for.
    for start in range(0, len(identifiers), REFRESH_CHUNK):
        batches_progress_refresh(batch_identifiers=identifiers[start : start + REFRESH_CHUNK], down_ids=down)
    return len(identifiers)


REFRESH_CHUNK = 100
