"""Verification off the request path: one batch's pending signatures, one aggregated pairing check, bisection."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from bls import G1Point, G2Point, InvalidPoint, PairingBackend, SignedItem, verify_same_message
from controlplane.changes import change_announce, signatures_checked
from intake.models import Signature, SignatureStatus
from ledger.models import Operator
from liveness.services import operator_sign_of_life
from progress.services import batch_progress_refresh

logger = logging.getLogger("intake")


@dataclass(frozen=True)
class VerifyOutcome:
    batch_identifier: str
    verified: int
    invalid: int
    pairing_checks: int


@lru_cache(maxsize=4096)
def _g2_key(encoded: str) -> G2Point:
    # Keys are immutable per registration and parsing checks the G2 subgroup (~20 ms): parse each once.
    return G2Point.from_hex(json.loads(encoded))


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
    with transaction.atomic():
        claimed = list(
            Signature.objects.select_for_update(skip_locked=True)
            .filter(batch_identifier=batch_identifier, status=SignatureStatus.PENDING)
            .order_by("id")[: int(settings.VERIFY_CHUNK)]
        )
        if not claimed:
            return VerifyOutcome(batch_identifier=batch_identifier, verified=0, invalid=0, pairing_checks=0)
        keys = operator_g2_keys(operator_ids={s.operator_id for s in claimed})
        items = []
        invalid_reasons: dict[int, str] = {}
        for signature in claimed:
            key = keys.get(signature.operator_id)
            if key is None:
                invalid_reasons[signature.id] = "operator has no registered G2 public key"
                continue
            items.append(
                SignedItem(
                    key=signature.id,
                    public_key_g2=key,
                    signature=G1Point(int(signature.signature_x, 16), int(signature.signature_y, 16)),
                )
            )
        result = verify_same_message(
            message=bytes.fromhex(batch_identifier[2:]), items=items, backend=backend
        )
        for invalid_key in result.invalid:
            invalid_reasons[cast(int, invalid_key)] = (
                "BLS signature does not verify against the operator's key"
            )
        now = timezone.now()
        valid_ids = [cast(int, k) for k in result.valid]
        if valid_ids:
            Signature.objects.filter(id__in=valid_ids).update(
                status=SignatureStatus.VERIFIED, verified_at=now
            )
            verified_operators = sorted({s.operator_id for s in claimed if s.id in set(valid_ids)})
            _conflicts_flag(batch_identifier=batch_identifier, operator_ids=verified_operators)
            # A verified signature is a sign of life (only the operator's key can make one); a mere post is not.
            for operator_id in verified_operators:
                operator_sign_of_life(operator_id=operator_id, at=now)
        for signature_id, reason in invalid_reasons.items():
            Signature.objects.filter(id=signature_id).update(
                status=SignatureStatus.INVALID, status_reason=reason, verified_at=now
            )
        if invalid_reasons:
            logger.warning(
                "batch %s: %d invalid signatures (operators %s)",
                batch_identifier,
                len(invalid_reasons),
                ", ".join(sorted({s.operator_id[:10] for s in claimed if s.id in invalid_reasons})),
            )
        # Recovery hears this in this transaction and requests a forward task per verified signature.
        change_announce(
            signatures_checked,
            batch_identifier=batch_identifier,
            signatures=[(s.id, s.operator_id) for s in claimed],
            valid_ids=valid_ids,
            invalid_reasons=invalid_reasons,
        )
        batch_progress_refresh(batch_identifier=batch_identifier)
    return VerifyOutcome(
        batch_identifier=batch_identifier,
        verified=len(valid_ids),
        invalid=len(invalid_reasons),
        pairing_checks=result.pairing_checks,
    )


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
