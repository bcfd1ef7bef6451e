"""Thin RQ jobs over the intake services. Ids in, rows claimed by the services; safe to run twice."""

from __future__ import annotations

from intake.services import signatures_expire_waiting, signatures_match_waiting
from intake.verify import batches_with_pending_signatures, signatures_verify_batch, signatures_verify_batches
from progress.services import progress_refresh_pending


def verify_batch_job(batch_identifier: str) -> dict[str, int]:
    outcome = signatures_verify_batch(batch_identifier=batch_identifier)
    return {
        "verified": outcome.verified,
        "invalid": outcome.invalid,
        "pairing_checks": outcome.pairing_checks,
    }


def intake_sweep() -> dict[str, int]:
    """Match and expire waiting signatures, verify whatever is pending, refresh pending batches' progress."""
    matched = signatures_match_waiting()
    expired = signatures_expire_waiting()
    outcomes = signatures_verify_batches(
        batch_identifiers=sorted(set(matched) | set(batches_with_pending_signatures()))
    )
    verified = sum(o.verified for o in outcomes)
    invalid = sum(o.invalid for o in outcomes)
    refreshed = progress_refresh_pending()
    return {
        "matched": len(matched),
        "expired": expired,
        "verified": verified,
        "invalid": invalid,
        "refreshed": refreshed,
    }
