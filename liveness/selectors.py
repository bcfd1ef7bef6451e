"""Liveness selectors: downtime windows, the batches an operator missed while down, who is live now."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from intake.models import BatchRefusal, Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, Operator
from liveness.models import OperatorLiveness, OperatorState, OperatorStateChange

LIVE_STATES = (OperatorState.UP, OperatorState.DEGRADED)
# A signature counts as given unless verification rejected it (or it never matched the batch).
SIGNED_STATUSES = (SignatureStatus.PENDING, SignatureStatus.VERIFIED)
OPEN_BATCH_STATUSES = (BatchStatus.PENDING, BatchStatus.VERIFIED)


def operator_downtime_windows(
    *, operator_id: str, since: datetime | None = None
) -> list[tuple[datetime, datetime | None]]:
    """The operator's down windows, oldest first, as (since, until); until is None while it is still down.

    With ``since``, only the windows that were still open at or after it.
    """
    changes = OperatorStateChange.objects.filter(operator_id=operator_id.lower(), state=OperatorState.DOWN)
    if since is not None:
        changes = changes.filter(Q(until__isnull=True) | Q(until__gt=since))
    return list(changes.order_by("since", "id").values_list("since", "until"))


def operator_missed_batches(*, operator_id: str, since: datetime | None = None) -> QuerySet[Batch]:
    """Pending or verified batches first seen while the operator was down that it has not signed, oldest first.

    ``since`` bounds them to batches first seen from then on (through the ``first_seen_at`` index): pages read
    a window, so their cost does not grow with the operator's whole history.
    """
    operator_id = operator_id.lower()
    signed = Signature.objects.filter(
        batch_identifier=OuterRef("identifier"), operator_id=operator_id, status__in=SIGNED_STATUSES
    )
    # A batch it refused on purpose (a bad proof) was answered, not missed.
    refused = BatchRefusal.objects.filter(batch_identifier=OuterRef("identifier"), operator_id=operator_id)
    # The down windows first (few, and fewer still overlapping ``since``), then the batches seen in them: a
    # correlated check would walk every earlier window of the operator for each batch.
    windows = OperatorStateChange.objects.filter(operator_id=operator_id, state=OperatorState.DOWN)
    if since is not None:
        windows = windows.filter(Q(until__isnull=True) | Q(until__gt=since))
    during = Q(pk__in=[])
    for window_since, window_until in windows.values_list("since", "until"):
        seen = Q(first_seen_at__gte=max(since, window_since) if since is not None else window_since)
        during |= seen & Q(first_seen_at__lt=window_until) if window_until else seen
    return (
        Batch.objects.filter(status__in=OPEN_BATCH_STATUSES)
        .filter(during)
        .exclude(Exists(signed))
        .exclude(Exists(refused))
        .order_by("first_seen_at", "id")
    )


def operators_live_ids() -> set[str]:
    """Ids of the registered operators that are up or degraded now (unknown and down ones are not)."""
    registered = Operator.objects.filter(registered=True).values("operator_id")
    return set(
        OperatorLiveness.objects.filter(state__in=LIVE_STATES, operator_id__in=registered).values_list(
            "operator_id", flat=True
        )
    )


def operator_liveness_get(*, operator_id: str) -> dict[str, object]:
    liveness = OperatorLiveness.objects.filter(operator_id=operator_id).first()
    if liveness is None:
        return {"state": "unknown", "since": None, "last_seen_at": None, "node_version": ""}
    return {
        "state": liveness.state,
        "since": liveness.since.isoformat(),
        "last_seen_at": liveness.last_seen_at.isoformat() if liveness.last_seen_at else None,
        "node_version": liveness.node_version,
    }
