"""Intake services: store a signed response durably (then it may be acknowledged), match and expire waiting ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring.intake.parse import IntakeError, SignedResponse
from monitoring.models import Batch, Operator, Signature, SignatureStatus
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


def signature_submit(*, response: SignedResponse, source: str = "") -> SubmitResult:
    """Check the operator, store the signature, commit. Raises IntakeError (403) for an unknown operator.

    Returns only after the row is committed: from then on it cannot be lost, so the caller may acknowledge.
    """
    operator = Operator.objects.filter(operator_id=response.operator_id).only("registered").first()
    if operator is None:
        raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
    batch = (
        Batch.objects.filter(identifier=response.batch_identifier)
        .only("task_created_block", "status")
        .first()
    )
    if batch is not None:
        stake = operator_stake_at_block(
            operator_id=response.operator_id, block_number=batch.task_created_block
        )
        if stake <= 0:
            raise IntakeError(
                "operatorId had no stake at the batch's taskCreatedBlock", field="operatorId", status=403
            )
        status = SignatureStatus.PENDING
    else:
        if not operator.registered:
            raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
        status = SignatureStatus.WAITING

    sig_x, sig_y = _hex32(response.signature.x), _hex32(response.signature.y)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # ON CONFLICT DO NOTHING: two concurrent identical submissions store one row, the other is a duplicate.
            cursor.execute(
                """
                INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
                    signature_x, signature_y, status, status_reason, conflicting, source, received_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, '', false, %s, now())
                ON CONFLICT (batch_identifier, operator_id, signature_x, signature_y) DO NOTHING
                RETURNING id
                """,
                [
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
        if row is None:
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
        signature_id = int(row[0])
        # A different signature by the same operator for the same batch: keep both as evidence, flag both.
        siblings = Signature.objects.filter(
            batch_identifier=response.batch_identifier, operator_id=response.operator_id
        ).exclude(id=signature_id)
        conflicting = siblings.exists()
        if conflicting:
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
            identifier = response.batch_identifier
            transaction.on_commit(lambda: _enqueue_verification(identifier))
    return SubmitResult(
        status="accepted", signature_id=signature_id, signature_status=status, conflicting=conflicting
    )


def _enqueue_verification(batch_identifier: str) -> None:
    """Ask a worker to verify this batch soon; the verifier sweep picks it up anyway if Redis is unavailable."""
    from monitoring.intake.jobs import verification_enqueue

    try:
        verification_enqueue(batch_identifier=batch_identifier)
    except Exception as exc:  # Redis is disposable: the row is the truth and the sweep will find it
        logger.warning(
            "could not enqueue verification of %s (%s); the sweep will pick it up", batch_identifier, exc
        )


def signatures_match_waiting() -> list[str]:
    """Waiting signatures whose batch has now been ingested become pending (or invalid without stake).

    Returns the batch identifiers that gained pending signatures.
    """
    matched: set[str] = set()
    with transaction.atomic():
        waiting = list(
            Signature.objects.select_for_update(skip_locked=True)
            .filter(status=SignatureStatus.WAITING, batch_identifier__in=Batch.objects.values("identifier"))
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
                matched.add(signature.batch_identifier)
        Signature.objects.bulk_update(waiting, ["status", "status_reason"])
    return sorted(matched)


def signatures_expire_waiting(*, now: datetime | None = None) -> int:
    """Waiting signatures older than INTAKE_WAITING_TTL that never matched a batch expire, with the reason."""
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
