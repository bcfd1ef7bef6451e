"""Selectors: reads of the signature intake (services write, selectors read)."""

from __future__ import annotations

from django.db.models import Count

from intake.models import Signature, SignatureStatus


def operator_signature_counts(*, operator_id: str) -> dict[str, int]:
    """How many of this operator's signatures are in each status (invalid ones are recorded against it)."""
    counts = {status: 0 for status in SignatureStatus.values}
    for row in Signature.objects.filter(operator_id=operator_id).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts
