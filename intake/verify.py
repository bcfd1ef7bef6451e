"""Verification off the request path: pending signatures of one or more batches, one pairing check, bisection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Subquery, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from bls import (
    G1Point,
    G2Point,
    InvalidPoint,
    PairingBackend,
    SignedItem,
    pairing_backend,
    verify_across_messages,
)
from controlplane.changes import change_announce, signatures_checked
from intake.models import Signature, SignatureStatus
from ledger.models import Operator
from liveness.services import operators_sign_of_life
from progress.services import batches_progress_refresh, operators_down_ids

logger = logging.getLogger("intake")


@dataclass(frozen=True)
class VerifyOutcome:
    batch_identifier: str
    verified: int
    invalid: int
    # Of the pass that verified the batch: shared by all the batches of that pass.
    pairing_checks: int


@lru_cache(maxsize=4096)
def _g2_key(encoded: str) -> G2Point:
    # Keys are immutable per registration and parsing checks the G2 subgroup: parse each once, with the pairing
    # backend's check (pyrevm's precompile: ~4 ms, not py_ecc's ~25 ms; a restarted verifier parses them all).
    return G2Point.from_hex(json.loads(encoded), in_subgroup=pairing_backend().g2_in_subgroup)


def operator_g2_keys(*, operator_ids: set[str]) -> dict[str, G2Point]:
    keys: dict[str, G2Point] = {}
    for operator_id, pubkey in Operator.objects.filter(operator_id__in=operator_ids).values_list(
        "operator_id", "pubkey_g2"
    ):
        if not pubkey:
            continue
        try:
            keys[operator_id] = _g2_key(json.dumps(pubkey, sort_keys=True))
        except InvalidPoint as exc:
            logger.error("operator %s has an unusable G2 key in the ledger: %s", operator_id, exc)
    return keys


def signatures_verify_batch(*, batch_identifier: str, backend: PairingBackend | None = None) -> VerifyOutcome:
    """Claim a chunk of this batch's pending signatures (skipping rows another verifier holds), verify, record,
    refresh. At most VERIFY_CHUNK at a time, oldest first: a flood of forgeries is worked through in bounded
    rounds, and the intake bounds how many of them one (batch, operator) can queue before the honest one."""
    return signatures_verify_batches(batch_identifiers=[batch_identifier], backend=backend)[0]


def signatures_verify_batches(
    *, batch_identifiers: Iterable[str], backend: PairingBackend | None = None
) -> list[VerifyOutcome]:
    """``signatures_verify_batch`` for several batches, in passes of at most VERIFY_PASS_BATCHES batches: each
    pass claims every batch's chunk and verifies them all with one pairing product (one final exponentiation,
    bisection on failure), then records each batch as ``signatures_verify_batch`` does. One outcome per batch,
    in the given order (duplicates dropped), identifiers lowercase as stored."""
    identifiers = list(dict.fromkeys(identifier.lower() for identifier in batch_identifiers))
    size = int(settings.VERIFY_PASS_BATCHES)
    outcomes: dict[str, VerifyOutcome] = {}
    for start in range(0, len(identifiers), size):
        outcomes.update(_verify_pass(batch_identifiers=identifiers[start : start + size], backend=backend))
    return [outcomes[identifier] for identifier in identifiers]


def _claim(*, batch_identifiers: list[str]) -> list[Signature]:
    """Each batch's oldest VERIFY_CHUNK pending rows, in one query; rows another verifier holds are skipped."""
    ranked = (
        Signature.objects.filter(batch_identifier__in=batch_identifiers, status=SignatureStatus.PENDING)
        .annotate(rank=Window(RowNumber(), partition_by=[F("batch_identifier")], order_by=F("id").asc()))
        .filter(rank__lte=int(settings.VERIFY_CHUNK))
        .values("id")
    )
    return list(
        Signature.objects.select_for_update(skip_locked=True)
        .filter(id__in=Subquery(ranked), status=SignatureStatus.PENDING)
        .order_by("id")
    )


def _verify_pass(*, batch_identifiers: list[str], backend: PairingBackend | None) -> dict[str, VerifyOutcome]:
    with transaction.atomic():
        claimed = _claim(batch_identifiers=batch_identifiers)
        if not claimed:
            return {
                i: VerifyOutcome(batch_identifier=i, verified=0, invalid=0, pairing_checks=0)
                for i in batch_identifiers
            }
        keys = operator_g2_keys(operator_ids={s.operator_id for s in claimed})
        items: dict[bytes, list[SignedItem]] = {}
        invalid_reasons: dict[int, str] = {}
        for signature in claimed:
            key = keys.get(signature.operator_id)
            if key is None:
                invalid_reasons[signature.id] = "operator has no registered G2 public key"
                continue
            items.setdefault(bytes.fromhex(signature.batch_identifier[2:]), []).append(
                SignedItem(
                    key=signature.id,
                    public_key_g2=key,
                    signature=G1Point(int(signature.signature_x, 16), int(signature.signature_y, 16)),
                )
            )
        result = verify_across_messages(items_by_message=items, backend=backend)
        for invalid_key in result.invalid:
            invalid_reasons[cast(int, invalid_key)] = (
                "BLS signature does not verify against the operator's key"
            )
        now = timezone.now()
        valid_ids = {cast(int, k) for k in result.valid}
        if valid_ids:
            Signature.objects.filter(id__in=valid_ids).update(
                status=SignatureStatus.VERIFIED, verified_at=now
            )
        by_reason: dict[str, list[int]] = {}
        for signature_id, reason in invalid_reasons.items():
            by_reason.setdefault(reason, []).append(signature_id)
        for reason, ids in by_reason.items():  # one UPDATE per reason (two at most), not per forgery
            Signature.objects.filter(id__in=ids).update(
                status=SignatureStatus.INVALID, status_reason=reason, verified_at=now
            )
        # A verified signature is a sign of life (only the operator's key can make one); a mere post is not.
        # Once per operator for the pass (its verified rows all carry this time), and before the announcements,
        # so the overview hears an operator is up before its signatures.
        operators_sign_of_life(operator_ids={s.operator_id for s in claimed if s.id in valid_ids}, at=now)
        by_batch: dict[str, list[Signature]] = {}
        for signature in claimed:
            by_batch.setdefault(signature.batch_identifier, []).append(signature)
        for batch_identifier, batch_claimed in by_batch.items():
            verified_operators = sorted({s.operator_id for s in batch_claimed if s.id in valid_ids})
            if verified_operators:
                _conflicts_flag(batch_identifier=batch_identifier, operator_ids=verified_operators)
            batch_invalid = {s.id: invalid_reasons[s.id] for s in batch_claimed if s.id in invalid_reasons}
            if batch_invalid:
                logger.warning(
                    "batch %s: %d invalid signatures (operators %s)",
                    batch_identifier,
                    len(batch_invalid),
                    ", ".join(sorted({s.operator_id[:10] for s in batch_claimed if s.id in batch_invalid})),
                )
            # Recovery hears this in this transaction and requests a forward task per verified signature.
            change_announce(
                signatures_checked,
                batch_identifier=batch_identifier,
                signatures=[(s.id, s.operator_id) for s in batch_claimed],
                valid_ids=[s.id for s in batch_claimed if s.id in valid_ids],
                invalid_reasons=batch_invalid,
            )
        batches_progress_refresh(batch_identifiers=list(by_batch), down_ids=operators_down_ids())
    return {
        i: VerifyOutcome(
            batch_identifier=i,
            verified=sum(1 for s in by_batch.get(i, []) if s.id in valid_ids),
            invalid=sum(1 for s in by_batch.get(i, []) if s.id in invalid_reasons),
            pairing_checks=result.pairing_checks,
        )
        for i in batch_identifiers
    }


def _conflicts_flag(*, batch_identifier: str, operator_ids: list[str]) -> None:
    """Two *verified* signatures of one operator that differ: flag both (BLS is deterministic, so this means two
    keys behind one operatorId, not a forger: a forgery never verifies, and never flags the honest one)."""
    conflicted = (
        Signature.objects.filter(
            batch_identifier=batch_identifier, operator_id__in=operator_ids, status=SignatureStatus.VERIFIED
        )
        .values("operator_id")
        .annotate(kinds=Count("id"))
        .filter(kinds__gt=1)
        .values_list("operator_id", flat=True)
    )
    for operator_id in conflicted:
        Signature.objects.filter(
            batch_identifier=batch_identifier, operator_id=operator_id, status=SignatureStatus.VERIFIED
        ).update(conflicting=True)
        logger.warning(
            "operator %s has two different verified signatures for batch %s", operator_id, batch_identifier
        )


def batches_with_pending_signatures(*, limit: int = 500) -> list[str]:
    return list(
        Signature.objects.filter(status=SignatureStatus.PENDING)
        .order_by("batch_identifier")
        .values_list("batch_identifier", flat=True)
        .distinct()[:limit]
    )
