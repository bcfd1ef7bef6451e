"""Forwarding with explicit acknowledgement, and batch replay to the current aggregator.

A verified signature counts as delivered only once an aggregator boot acknowledged it (a SignatureDelivery
row for that boot id). When the boot id changes, nothing is delivered any more, so pending batches replay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from ledger.selectors import operator_stakes_at_block
from progress.quorum import quorum_threshold, stake_holds_quorum, stake_percent
from recovery.aggregator import (
    UNKNOWN_TASK,
    UNKNOWN_TASK_CODES,
    AggregatorAnswer,
    AggregatorUnavailable,
    aggregator_announce,
    aggregator_post_signature,
)
from recovery.models import OPEN_STATUSES, RecoveryKind, RecoveryTask, SignatureDelivery
from recovery.services.tasks import Outcome, forward_subject, recovery_task_request
from recovery.services.watch import aggregator_current_boot

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


def _boot() -> str:
    """The aggregator boot the watch last saw: over gob, what a delivery is recorded against."""
    return aggregator_current_boot() or ""


def _announce(batch: Batch) -> AggregatorAnswer:
    return aggregator_announce(
        merkle_root=batch.merkle_root,
        sender=batch.sender,
        task_created_block=batch.task_created_block,
        boot_id=_boot(),
    )


def signature_deliver(*, signature: Signature, batch: Batch, watched: str | None = None) -> Outcome:
    """Send one verified signature; on an unknown or expired task, announce it, send again, and replay the batch.

    An aggregator that did not know the task has lost whatever it held of it (it expired the task, or it
    restarted), including signatures this boot acknowledged before: only a replay of every verified signature
    gives them back, so one is requested. ``watched`` is the boot the watch saw, when the caller has read it.
    """
    watched = _boot() if watched is None else watched
    try:
        answer = aggregator_post_signature(signature_payload(signature), boot_id=watched)
        if answer.status_code in (404, 410) and answer.code in ("unknown_task", "task_expired"):
            announced = _announce(batch)
            if announced.status_code != 200:
                return Outcome.retry(
                    f"announcing the task failed: HTTP {announced.status_code} {announced.body}"
                )
            recovery_task_request(
                kind=RecoveryKind.REPLAY,
                subject=batch.identifier,
                reason=f"the aggregator (boot {announced.boot_id[:8]}) had dropped the task ({answer.code})",
                urgent=True,
            )
            answer = aggregator_post_signature(signature_payload(signature), boot_id=watched)
    except AggregatorUnavailable as exc:
        return Outcome.retry(f"aggregator unavailable: {exc}")
    if answer.status_code == 200 and answer.code in ACKNOWLEDGED:
        _record_delivery(signature=signature, answer=answer)
        return Outcome.done(
            f"acknowledged ({answer.code}) by boot {answer.boot_id[:8]}", boot_id=answer.boot_id
        )
    return Outcome.retry(f"not acknowledged: HTTP {answer.status_code} {answer.body}")


def _undelivered(*, batch_identifier: str, boot_id: str) -> list[Signature]:
    return list(
        Signature.objects.filter(batch_identifier=batch_identifier, status=SignatureStatus.VERIFIED)
        .exclude(Exists(SignatureDelivery.objects.filter(signature=OuterRef("pk"), boot_id=boot_id)))
        .order_by("id")
    )


def forward_execute(task: RecoveryTask) -> Outcome:
    """Send the batch every verified signature the current aggregator boot has not acknowledged.

    Not only those of the pass that asked: a task of another pass of the same batch may be running or backing
    off, and sending a signature twice costs one request (the aggregator answers ``duplicate``).
    """
    identifier, _, first = task.subject.partition(":")
    if not first.isdigit():
        return Outcome.cancel(f"not a forward subject (batch:first signature): {task.subject!r}")
    batch = Batch.objects.filter(identifier=identifier).first()
    if batch is None or batch.status != BatchStatus.PENDING:
        return Outcome.cancel(f"the batch is {batch.status if batch else 'gone'}: nothing to forward")
    boot_id = watched = _boot()
    undelivered = _undelivered(batch_identifier=identifier, boot_id=boot_id)
    if not undelivered:
        return Outcome.done(f"every verified signature already acknowledged by boot {boot_id[:8]}", sent=0)
    if RecoveryTask.objects.filter(
        kind=RecoveryKind.REPLAY, subject=batch.identifier, status__in=OPEN_STATUSES
    ).exists():
        # After an aggregator restart every pending batch has a replay, which sends all its signatures: forwarding
        # them as well would only delay the replays. Later, this finds them delivered.
        return Outcome.retry("the batch's open replay sends it")
    sent = 0
    for signature in undelivered:
        outcome = signature_deliver(signature=signature, batch=batch, watched=watched)
        if outcome.action != "done":
            return Outcome.retry(f"signature {signature.id}: {outcome.detail}", sent=sent)
        boot_id = str((outcome.result or {}).get("boot_id") or boot_id)
        sent += 1
    return Outcome.done(f"{sent} acknowledged by boot {boot_id[:8]}", sent=sent, boot_id=boot_id)


def _largest_stake_first(batch: Batch) -> tuple[list[Signature], dict[str, Decimal], Decimal]:
    """The batch's verified signatures, the largest stake at its task block first; the stakes and their total."""
    stakes = operator_stakes_at_block(block_number=batch.task_created_block)
    signatures = list(
        Signature.objects.filter(batch_identifier=batch.identifier, status=SignatureStatus.VERIFIED).order_by(
            "id"
        )
    )
    signatures.sort(key=lambda s: -stakes.get(s.operator_id, Decimal(0)))
    return signatures, stakes, sum(stakes.values(), Decimal(0))


def replay_execute(task: RecoveryTask) -> Outcome:
    """Announce the batch to the current aggregator and send it the batch's verified signatures, the largest
    stake first, until those it acknowledged hold a quorum of the stake at the task's block.

    Not only those this boot has not acknowledged: an aggregator drops what it held of a task when the task
    expires, so an acknowledgement says what it received, not what it still holds. It answers ``duplicate`` for
    what it does hold, so sending again costs one request and loses nothing. A quorum is all an aggregator
    responds with, and after a restart it verifies every pending batch's signatures at once: the rest of them,
    each one more pairing check there, are left to the forwarding pass, which sends them if the batch stays
    pending (and finds nothing to do once it is verified).
    """
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
    watched = _boot()  # once a replay: a boot that changes meanwhile gets every pending batch replayed again
    signatures, stakes, total = _largest_stake_first(batch)
    threshold = quorum_threshold()
    sent, held = 0, Decimal(0)
    for signature in signatures:
        try:
            answer = aggregator_post_signature(signature_payload(signature), boot_id=watched)
        except AggregatorUnavailable as exc:
            return Outcome.retry(
                f"signature {signature.id}: aggregator unavailable: {exc}", sent=sent, boot_id=boot_id
            )
        if answer.status_code == 200 and answer.code == "responded":
            return Outcome.done(
                "the aggregator responded for this batch meanwhile", sent=sent, boot_id=boot_id
            )
        if answer.status_code != 200 or answer.code not in ACKNOWLEDGED:
            # Expired again between the announcement and now, or refused: the next run announces afresh. A gob
            # aggregator's "dropped" (reply 1) means it does not know the task: the standby may answer instead.
            return Outcome.retry(
                f"signature {signature.id} not acknowledged: HTTP {answer.status_code} {answer.body}",
                sent=sent,
                boot_id=boot_id,
                **({UNKNOWN_TASK: True} if answer.code in UNKNOWN_TASK_CODES else {}),
            )
        _record_delivery(signature=signature, answer=answer)
        sent += 1
        held += stakes.get(signature.operator_id, Decimal(0))
        if stake_holds_quorum(signed=held, total=total, threshold=threshold) and sent < len(signatures):
            return Outcome.done(
                f"replayed to boot {boot_id[:8]}: {sent} signatures sent, a quorum of the stake "
                f"({stake_percent(part=held, total=total):.0f}%); {len(signatures) - sent} left to forwarding",
                sent=sent,
                boot_id=boot_id,
            )
    return Outcome.done(f"replayed to boot {boot_id[:8]}: {sent} signatures sent", sent=sent, boot_id=boot_id)


def forwarding_request_verified(*, batch_identifier: str, valid_ids: Sequence[int], **_: object) -> None:
    """One forward task for the signatures a verifier pass verified in a batch, in the transaction that verified
    them (not a later scan): one row and one job per batch and pass, not per signature.

    Connected to ``controlplane.changes.signatures_checked``."""
    if (
        not valid_ids
        or not Batch.objects.filter(identifier=batch_identifier, status=BatchStatus.PENDING).exists()
    ):
        return  # already verified on chain: nothing to deliver
    recovery_task_request(
        kind=RecoveryKind.FORWARD,
        subject=forward_subject(batch_identifier=batch_identifier, first_signature_id=min(valid_ids)),
        reason=f"{len(valid_ids)} verified",
    )
