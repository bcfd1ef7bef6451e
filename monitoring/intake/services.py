"""Intake services: store a signed response durably (then it may be acknowledged), match and expire waiting ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from monitoring.intake.parse import IntakeError, SignedResponse
from monitoring.live.notify import live_signature_accepted
from monitoring.models import Batch, BatchProgressChange, BatchRefusal, Signature, SignatureStatus
from monitoring.selectors import operator_stake_at_block

logger = logging.getLogger("monitoring.intake")


@dataclass(frozen=True)
class SubmitResult:
    status: str  # "accepted" or "duplicate"
    signature_id: int
    signature_status: str
    conflicting: bool


def _hex32(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


_LOOKUP = """
SELECT o.registered, b.task_created_block,
    (SELECT s.stake FROM monitoring_operatorstake s
     WHERE s.operator_id = o.operator_id AND NOT s.removed AND s.quorum_number = 0
       AND s.block_number <= b.task_created_block
     ORDER BY s.block_number DESC, s.log_index DESC LIMIT 1)
FROM monitoring_operator o LEFT JOIN monitoring_batch b ON b.identifier = %s
WHERE o.operator_id = %s
"""

# The insert and the conflict check in one round trip: ``earlier`` reads the snapshot before the insert.
_INSERT = """
WITH earlier AS (
    SELECT id FROM monitoring_signature WHERE batch_identifier = %s AND operator_id = %s
), inserted AS (
    INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
        signature_x, signature_y, status, status_reason, conflicting, source, received_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, '', false, %s, now())
    ON CONFLICT (batch_identifier, operator_id, signature_x, signature_y) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM inserted), (SELECT count(*) FROM earlier)
"""

# Verifiers LISTEN on this channel; the notification is delivered only if the transaction commits.
NOTIFY_CHANNEL = "signatures_pending"


def signature_submit(*, response: SignedResponse, source: str = "") -> SubmitResult:
    """Check the operator, store the signature, commit. Raises IntakeError (403) for an unknown operator.

    Returns only after the row is committed: from then on it cannot be lost, so the caller may acknowledge.
    """
    sig_x, sig_y = _hex32(response.signature.x), _hex32(response.signature.y)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOOKUP, [response.batch_identifier, response.operator_id])
        found = cursor.fetchone()
        if found is None:
            raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
        registered, task_created_block, stake = found
        if task_created_block is not None:
            if not stake or stake <= 0:
                raise IntakeError(
                    "operatorId had no stake at the batch's taskCreatedBlock", field="operatorId", status=403
                )
            status = SignatureStatus.PENDING
        elif not registered:
            raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
        else:
            status = SignatureStatus.WAITING

        cursor.execute(
            _INSERT,
            [
                response.batch_identifier,
                response.operator_id,
                response.batch_identifier,
                response.batch_merkle_root,
                response.sender_address,
                response.operator_id,
                sig_x,
                sig_y,
                status,
                source[:64],
            ],
        )
        row = cursor.fetchone()
        inserted_id, earlier = (row[0], int(row[1])) if row else (None, 0)
        if inserted_id is None:
            existing = Signature.objects.get(
                batch_identifier=response.batch_identifier,
                operator_id=response.operator_id,
                signature_x=sig_x,
                signature_y=sig_y,
            )
            return SubmitResult(
                status="duplicate",
                signature_id=existing.id,
                signature_status=existing.status,
                conflicting=existing.conflicting,
            )
        conflicting = earlier > 0
        if conflicting:
            # A different signature by the same operator for the same batch: keep both as evidence, flag both.
            Signature.objects.filter(
                batch_identifier=response.batch_identifier, operator_id=response.operator_id
            ).update(conflicting=True)
            logger.warning(
                "conflicting signature from operator %s for batch %s (kept as evidence)",
                response.operator_id,
                response.batch_identifier,
            )
        from monitoring.liveness.services import operator_sign_of_life

        operator_sign_of_life(operator_id=response.operator_id)
        if status == SignatureStatus.PENDING:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, response.batch_identifier])
        live_signature_accepted(
            signature_id=int(inserted_id),
            batch_identifier=response.batch_identifier,
            operator_id=response.operator_id,
            status=status,
            stake=stake,
            conflicting=conflicting,
        )
    return SubmitResult(
        status="accepted", signature_id=int(inserted_id), signature_status=status, conflicting=conflicting
    )


# An expired signature is matched again when its batch is first seen within this window: an ingester that was
# down longer than INTAKE_WAITING_TTL must not cost an acknowledged signature (the sweep runs every second).
REVIVE_WINDOW = timedelta(hours=1)


def signatures_match_waiting() -> list[str]:
    """Waiting signatures whose batch has now been ingested become pending (or invalid without stake).

    Expired ones too, when their batch is new to the ledger: expiry only parks a signature whose batch did not
    show up in time, it never gives it up. Returns the batch identifiers that gained pending signatures.
    """
    matched: set[str] = set()
    recent = Batch.objects.filter(first_seen_at__gte=timezone.now() - REVIVE_WINDOW).values("identifier")
    with transaction.atomic():
        waiting = list(
            Signature.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=SignatureStatus.WAITING, batch_identifier__in=Batch.objects.values("identifier"))
                | Q(status=SignatureStatus.EXPIRED, batch_identifier__in=recent)
            )
            .order_by("id")[:5000]
        )
        if not waiting:
            return []
        blocks = dict(
            Batch.objects.filter(identifier__in={s.batch_identifier for s in waiting}).values_list(
                "identifier", "task_created_block"
            )
        )
        for signature in waiting:
            stake = operator_stake_at_block(
                operator_id=signature.operator_id, block_number=blocks[signature.batch_identifier]
            )
            if stake <= 0:
                signature.status = SignatureStatus.INVALID
                signature.status_reason = "operator had no stake at the batch's taskCreatedBlock"
            else:
                signature.status = SignatureStatus.PENDING
                signature.status_reason = ""
                matched.add(signature.batch_identifier)
        Signature.objects.bulk_update(waiting, ["status", "status_reason"])
    return sorted(matched)


def signatures_expire_waiting(*, now: datetime | None = None) -> int:
    """Waiting signatures older than INTAKE_WAITING_TTL that never matched a batch expire, with the reason.

    Expired is parked, not dropped: the batch turning up later still matches it (``signatures_match_waiting``).
    """
    now = now or timezone.now()
    ttl = float(settings.INTAKE_WAITING_TTL)
    expired = Signature.objects.filter(
        status=SignatureStatus.WAITING, received_at__lt=now - timedelta(seconds=ttl)
    ).update(
        status=SignatureStatus.EXPIRED,
        status_reason=f"no batch with this identifier was ingested within {ttl:g} s",
    )
    if expired:
        logger.warning("%d waiting signatures expired without a matching batch", expired)
    return expired


def intake_forget_chain(**_: object) -> None:
    """The chain was replaced (``ledger.chain_replaced``): its signatures, refusals and progress describe nothing."""
    Signature.objects.all().delete()
    BatchRefusal.objects.all().delete()
    BatchProgressChange.objects.all().delete()
