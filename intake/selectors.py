"""Selectors: reads of the signature intake (services write, selectors read)."""

from __future__ import annotations

from controlplane.rowcounts import rowcounts
from intake.models import SignatureStatus


def operator_signature_counts(*, operator_id: str) -> dict[str, int]:
    """How many of this operator's signatures are in each status (invalid ones are recorded against it)."""
    counts = {status: 0 for status in SignatureStatus.values}
    # Counted by the writes: a scan of its signatures would grow with the retention window.
    counts.update(rowcounts(prefix=f"signatures:operator:{operator_id}"))
    return counts
