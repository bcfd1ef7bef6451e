"""Forwarding with explicit acknowledgement, and batch replay to the current aggregator.

A verified signature counts as delivered only once an aggregator boot acknowledged it (a SignatureDelivery
row for that boot id). When the boot id changes, nothing is delivered any more, so pending batches replay.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from monitoring.models import Batch, BatchStatus, Signature, SignatureStatus
from recovery.aggregator import (
    AggregatorAnswer,
    AggregatorUnavailable,
    aggregator_announce,
    aggregator_post_signature,
)
from recovery.models import RecoveryTask, SignatureDelivery
from recovery.services.tasks import Outcome

logger = logging.getLogger("recovery")

ACKNOWLEDGED = {"accepted", "duplicate", "responded"}


def signature_payload(signature: Signature) -> dict[str, object]:
    return {
        "batchMerkleRoot": signature.batch_merkle_root,
        "senderAddress": signature.sender_address,
        "batchIdentifierHash": signature.batch_identifier,
        "blsSignature": {"X": signature.signature_x, "Y": signature.signature_y},
        "operatorId": signature.operator_id,
    }


def _record_delivery(*, signature: Signature, answer: AggregatorAnswer) -> None:
    try:
        with transaction.atomic():
            SignatureDelivery.objects.create(
                signature=signature,
                boot_id=answer.boot_id,
                batch_identifier=signature.batch_identifier,
                answer=answer.code[:32],
            )
    except IntegrityError:
        pass  # acknowledged by this boot before: idempotent


def _announce(batch: Batch) -> AggregatorAnswer:
    return aggregator_announce(
        merkle_root=batch.merkle_root, sender=batch.sender, task_created_block=batch.task_created_block
    )


def signature_deliver(*, signature: Signature, batch: Batch) -> Outcome:
    """Send one verified signature; on an unknown or expired task, announce it and send again."""
    try:
        answer = aggregator_post_signature(signature_payload(signature))
        if answer.status_code in (404, 410) and answer.code in ("unknown_task", "task_expired"):
            announced = _announce(batch)
            if announced.status_code != 200:
                return Outcome.retry(
                    f"announcing the task failed: HTTP {announced.status_code} {announced.body}"
                )
            answer = aggregator_post_signature(signature_payload(signature))
    except AggregatorUnavailable as exc:
        return Outcome.retry(f"aggregator unavailable: {exc}")
    if answer.status_code == 200 and answer.code in ACKNOWLEDGED:
        _record_delivery(signature=signature, answer=answer)
        return Outcome.done(
            f"acknowledged ({answer.code}) by boot {answer.boot_id[:8]}", boot_id=answer.boot_id
        )
    return Outcome.retry(f"not acknowledged: HTTP {answer.status_code} {answer.body}")


def forward_execute(task: RecoveryTask) -> Outcome:
    signature = Signature.objects.filter(id=int(task.subject)).first()
    if signature is None or signature.status != SignatureStatus.VERIFIED:
        return Outcome.cancel("the signature is not verified")
    batch = Batch.objects.filter(identifier=signature.batch_identifier).first()
    if batch is None or batch.status != BatchStatus.PENDING:
        return Outcome.cancel(f"the batch is {batch.status if batch else 'gone'}: nothing to forward")
    return signature_deliver(signature=signature, batch=batch)


def replay_execute(task: RecoveryTask) -> Outcome:
    """Announce the batch to the current aggregator and send every verified signature it has not acknowledged."""
    batch = Batch.objects.filter(identifier=task.subject).first()
    if batch is None or batch.status != BatchStatus.PENDING:
        return Outcome.cancel(f"the batch is {batch.status if batch else 'gone'}: nothing to replay")
    try:
        announced = _announce(batch)
    except AggregatorUnavailable as exc:
        return Outcome.retry(f"aggregator unavailable: {exc}")
    if announced.status_code == 200 and announced.code == "responded":
        return Outcome.done("the aggregator has already responded for this batch")
    if announced.status_code != 200:
        return Outcome.retry(f"announcing the task failed: HTTP {announced.status_code} {announced.body}")
    boot_id = announced.boot_id
    sent = 0
    for signature in Signature.objects.filter(
        batch_identifier=batch.identifier, status=SignatureStatus.VERIFIED
    ).order_by("id"):
        if SignatureDelivery.objects.filter(signature=signature, boot_id=boot_id).exists():
            continue
        outcome = signature_deliver(signature=signature, batch=batch)
        if outcome.action != "done":
            return Outcome.retry(f"signature {signature.id}: {outcome.detail}", sent=sent, boot_id=boot_id)
        sent += 1
    return Outcome.done(f"replayed to boot {boot_id[:8]}: {sent} signatures sent", sent=sent, boot_id=boot_id)
