"""What the recovery loop looks for each pass; each finding becomes an (idempotent) recovery task request."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, IngestCursor
from progress.models import BatchProgress
from recovery.aggregator import UNKNOWN_TASK, AggregatorUnavailable, aggregator_health, aggregator_url
from recovery.models import AggregatorBoot, RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services.tasks import (
    backoff_seconds,
    forward_subject,
    recovery_task_request,
    recovery_tasks_request,
)

logger = logging.getLogger("recovery")


class _Seen:
    """This process's last health answer from the aggregator (the recovery loop asks each pass)."""

    reachable: bool | None = None


def aggregator_reachable() -> bool | None:
    """Whether the aggregator answered the last watch of this process; None before the first."""
    return _Seen.reachable


def aggregator_current_boot() -> str | None:
    return AggregatorBoot.objects.order_by("-last_seen_at").values_list("boot_id", flat=True).first()


def aggregator_watch() -> str | None:
    """Observe the aggregator's boot id; on a new one (crash, restart, replacement), replay every pending batch.

    Returns the new boot id when it changed, else None.
    """
    try:
        answer = aggregator_health()
    except AggregatorUnavailable:
        _Seen.reachable = False
        return None
    _Seen.reachable = True
    boot_id = answer.boot_id
    if not boot_id:
        return None
    previous = aggregator_current_boot()
    boot, created = AggregatorBoot.objects.get_or_create(boot_id=boot_id, defaults={"url": aggregator_url()})
    if not created:
        boot.save(update_fields=["last_seen_at"])
        return None
    pending = list(Batch.objects.filter(status=BatchStatus.PENDING).values_list("identifier", flat=True))
    reason = f"aggregator boot changed {previous[:8] if previous else 'none'} -> {boot_id[:8]}"
    for identifier in pending:
        # Urgent: a replay still backing off from the old aggregator's failures is due now, at the new one.
        recovery_task_request(kind=RecoveryKind.REPLAY, subject=identifier, reason=reason, urgent=True)
    logger.warning("%s: replaying %d pending batches", reason, len(pending))
    return boot_id


def signatures_forward_request() -> int:
    """Pending batches with verified signatures the current aggregator boot has not acknowledged get a forward
    task (one per batch, named after its first such signature: asking again while it is open is a no-op)."""
    boot_id = aggregator_current_boot()
    # The pending batches first, through their index; then their undelivered signatures, materialized before the
    # grouping (left to itself the planner walks the primary key of every signature looking for them).
    pending = list(Batch.objects.filter(status=BatchStatus.PENDING).values_list("identifier", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH candidates AS MATERIALIZED (
                SELECT s.id, s.batch_identifier FROM monitoring_signature s
                WHERE s.batch_identifier = ANY(%(pending)s) AND s.status = %(verified)s
                    AND NOT EXISTS (
                        SELECT 1 FROM recovery_signaturedelivery d WHERE d.signature_id = s.id AND d.boot_id = %(boot)s
                    )
            )
            SELECT batch_identifier, min(id) FROM candidates GROUP BY batch_identifier ORDER BY min(id)
            """,
            {"pending": pending, "verified": SignatureStatus.VERIFIED.value, "boot": boot_id or ""},
        )
        owed = [(str(identifier), int(first)) for identifier, first in cursor.fetchall()]
    return recovery_tasks_request(
        kind=RecoveryKind.FORWARD,
        subjects=[
            forward_subject(batch_identifier=identifier, first_signature_id=first)
            for identifier, first in owed
        ],
        reason="verified signatures not acknowledged by the current aggregator",
    )


def stuck_batches_replay() -> int:
    """Pending batches whose verified signatures reach quorum but that stay unverified on chain get replayed.

    Again and again while they stay stuck, but each replay of a batch waits longer after the previous one
    finished (1, 2, 4 … up to RECOVERY_BACKOFF_CAP seconds): a batch the aggregator cannot answer for a while
    must not be replayed on every pass.
    """
    head = IngestCursor.objects.aggregate(head=Max("block_number"))["head"]
    if head is None:
        return 0
    replays = RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY, subject=OuterRef("batch__identifier"))
    stuck = (
        BatchProgress.objects.filter(
            batch__status=BatchStatus.PENDING,
            quorum_reached_at__isnull=False,
            batch__created_block__lt=head - int(settings.RECOVERY_STUCK_BLOCKS),
        )
        .annotate(
            replays=Coalesce(
                Subquery(replays.values("subject").annotate(n=Count("id")).values("n")[:1]), Value(0)
            ),
            last_replay=Subquery(replays.order_by("-finished_at").values("finished_at")[:1]),
        )
        .values_list("batch__identifier", "replays", "last_replay")
    )
    now = timezone.now()
    return recovery_tasks_request(
        kind=RecoveryKind.REPLAY,
        subjects=[
            identifier
            for identifier, count, last_replay in stuck
            if last_replay is None or (now - last_replay).total_seconds() >= backoff_seconds(int(count))
        ],
        reason=f"quorum of verified signatures but still pending {settings.RECOVERY_STUCK_BLOCKS}+ blocks later",
    )


def standby_responses_request(*, aggregator_reachable: bool | None) -> int:
    """With STANDBY_RESPONDER on: a respond task for each batch the aggregator can't answer.

    That is a pending batch whose verified signatures reach quorum, still unanswered STANDBY_AFTER_BLOCKS blocks
    after replays began (RECOVERY_STUCK_BLOCKS), while the aggregator is unreachable or said, to a replay of this
    batch, that it does not know the task. A batch whose last response was refused (its simulation reverted) is
    asked about again only once more signatures are verified: never blindly.
    """
    if not settings.STANDBY_RESPONDER:
        return 0
    head = IngestCursor.objects.aggregate(head=Max("block_number"))["head"]
    if head is None:
        return 0
    before = head - int(settings.RECOVERY_STUCK_BLOCKS) - int(settings.STANDBY_AFTER_BLOCKS)
    candidates = BatchProgress.objects.filter(
        batch__status=BatchStatus.PENDING, quorum_reached_at__isnull=False, batch__created_block__lte=before
    )
    if aggregator_reachable is not False:
        unknown = RecoveryTask.objects.filter(
            kind=RecoveryKind.REPLAY, subject=OuterRef("batch__identifier"), result__has_key=UNKNOWN_TASK
        )
        candidates = candidates.filter(Exists(unknown))
    why = (
        "the aggregator is unreachable"
        if aggregator_reachable is False
        else "the aggregator does not know the task"
    )
    wanted: list[str] = []
    for identifier in candidates.values_list("batch__identifier", flat=True)[:200]:
        last = (
            RecoveryTask.objects.filter(kind=RecoveryKind.RESPOND, subject=identifier)
            .order_by("-id")
            .values("status", "result")
            .first()
        )
        if last is not None and last["status"] == RecoveryStatus.CANCELLED and "signers" in last["result"]:
            verified = (
                Signature.objects.filter(batch_identifier=identifier, status=SignatureStatus.VERIFIED)
                .values("operator_id")
                .distinct()
                .count()
            )
            if verified <= int(last["result"]["signers"]):
                continue
        wanted.append(identifier)
    return recovery_tasks_request(
        kind=RecoveryKind.RESPOND,
        subjects=wanted,
        reason=f"quorum of verified signatures, still unanswered, and {why}",
    )
