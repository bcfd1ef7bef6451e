"""Reads for the operator pages: liveness, stake share, missed batches, uptime, signatures, catch-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from intake.models import BatchRefusal, Signature
from intake.selectors import operator_signature_counts
from ledger.models import Batch, Operator
from ledger.selectors import operator_stake_share, operator_total_current_stake
from liveness.models import OperatorLiveness, OperatorState, OperatorStateChange
from liveness.selectors import (
    LIVE_STATES,
    OPEN_BATCH_STATUSES,
    SIGNED_STATUSES,
    operator_downtime_windows,
    operator_missed_batches,
)

OPERATOR_STATES = [state.value for state in OperatorState]
SIGNATURE_HISTORY = 50
MISSED_SHOWN = 20
UPTIME_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_WINDOW = "24h"


# The operator list counts missed batches over this window: a bound that does not grow with history.
MISSED_LIST_WINDOW = UPTIME_WINDOWS[DEFAULT_WINDOW]


def _missed_batches_count() -> Subquery:
    """Per operator (the outer row): batches first seen in the last MISSED_LIST_WINDOW while it was down that it
    has not signed.

    The same rule as ``operator_missed_batches``, as a correlated COUNT so a whole page is one query.
    """
    operator_id = OuterRef(OuterRef("operator_id"))
    down_then = OperatorStateChange.objects.filter(
        operator_id=operator_id, state=OperatorState.DOWN, since__lte=OuterRef("first_seen_at")
    ).filter(Q(until__isnull=True) | Q(until__gt=OuterRef("first_seen_at")))
    signed = Signature.objects.filter(
        batch_identifier=OuterRef("identifier"), operator_id=operator_id, status__in=SIGNED_STATUSES
    )
    # A batch it refused on purpose (a bad proof) was answered, not missed.
    refused = BatchRefusal.objects.filter(batch_identifier=OuterRef("identifier"), operator_id=operator_id)
    missed = (
        Batch.objects.filter(status__in=OPEN_BATCH_STATUSES, first_seen_at__gte=Now() - MISSED_LIST_WINDOW)
        .filter(Exists(down_then))
        .exclude(Exists(signed))
        .exclude(Exists(refused))
        .order_by()
        .annotate(n=Func(F("id"), function="COUNT"))
        .values("n")
    )
    return Subquery(missed, output_field=IntegerField())


def _live(field: str) -> Subquery:
    """One field of the operator's liveness row (there may be none) as a correlated subquery."""
    return Subquery(OperatorLiveness.objects.filter(operator_id=OuterRef("operator_id")).values(field)[:1])


def _live_state() -> Coalesce:
    return Coalesce(_live("state"), Value(OperatorState.UNKNOWN.value))


_ROW_FIELDS = (
    "operator_id",
    "address",
    "registered",
    "current_stake",
    "socket",
    "live_state",
    "live_since",
    "last_seen_at",
    "missed_batches",
)


def operator_filtered(*, state: str | None = None) -> QuerySet[Operator, dict[str, Any]]:
    """Operators as row dicts (liveness and missed batches annotated), registered and biggest stake first."""
    operators = Operator.objects.annotate(
        live_state=_live_state(),
        live_since=_live("since"),
        last_seen_at=_live("last_seen_at"),
        missed_batches=Coalesce(_missed_batches_count(), Value(0)),
    )
    if state:
        operators = operators.filter(live_state=state)
    return operators.order_by("-registered", "-current_stake", "operator_id").values(*_ROW_FIELDS)


@dataclass(frozen=True)
class OperatorRow:
    operator_id: str
    address: str
    registered: bool
    stake: Decimal
    socket: str
    state: str
    since: datetime | None
    last_seen_at: datetime | None
    missed_batches: int
    share_percent: float | None


def _share_percent(*, stake: Decimal, registered: bool, total: Decimal) -> float | None:
    if total <= 0:
        return None
    return float(stake * 100 / total) if registered else 0.0


def operator_rows(*, rows: Sequence[dict[str, Any]], total: Decimal | None = None) -> list[OperatorRow]:
    """Typed rows with each operator's share of the registered stake (one query for the total)."""
    total = operator_total_current_stake() if total is None else total
    return [
        OperatorRow(
            operator_id=row["operator_id"],
            address=row["address"],
            registered=row["registered"],
            stake=Decimal(row["current_stake"]),
            socket=row["socket"],
            state=row["live_state"],
            since=row["live_since"],
            last_seen_at=row["last_seen_at"],
            missed_batches=int(row["missed_batches"]),
            share_percent=_share_percent(
                stake=Decimal(row["current_stake"]), registered=row["registered"], total=total
            ),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class NetworkLiveness:
    """The registered operators' liveness in one query: counts by state, stake online, who is in which state."""

    states: list[dict[str, Any]]
    total_stake: Decimal
    online_stake: Decimal

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OPERATOR_STATES, 0)
        for row in self.states:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts

    @property
    def stake_online_percent(self) -> float | None:
        return float(self.online_stake * 100 / self.total_stake) if self.total_stake > 0 else None


def network_liveness() -> NetworkLiveness:
    rows = list(
        Operator.objects.filter(registered=True)
        .annotate(live_state=_live_state(), live_since=_live("since"))
        .order_by("-current_stake", "operator_id")
        .values("operator_id", "current_stake", "live_state", "live_since")
    )
    live = {str(state) for state in LIVE_STATES}
    return NetworkLiveness(
        states=[
            {"operator_id": r["operator_id"], "state": r["live_state"], "since": r["live_since"]}
            for r in rows
        ],
        total_stake=sum((Decimal(r["current_stake"]) for r in rows), Decimal(0)),
        online_stake=sum((Decimal(r["current_stake"]) for r in rows if r["live_state"] in live), Decimal(0)),
    )


# --- One operator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UptimeSegment:
    start: datetime
    end: datetime
    state: str
    left_percent: float
    width_percent: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def uptime_segments(*, operator_id: str, start: datetime, end: datetime) -> list[UptimeSegment]:
    """The operator's states over [start, end] as contiguous segments; time with no record is "unknown"."""
    span = (end - start).total_seconds()
    changes = (
        OperatorStateChange.objects.filter(operator_id=operator_id, since__lt=end)
        .filter(Q(until__isnull=True) | Q(until__gt=start))
        .order_by("since", "id")
    )
    pieces: list[tuple[datetime, datetime, str]] = []
    cursor = start
    for change in changes:
        s = max(change.since, start, cursor)
        e = min(change.until or end, end)
        if e <= s:
            continue
        if s > cursor:
            pieces.append((cursor, s, OperatorState.UNKNOWN.value))
        pieces.append((s, e, change.state))
        cursor = e
    if cursor < end:
        pieces.append((cursor, end, OperatorState.UNKNOWN.value))
    return [
        UptimeSegment(
            start=s,
            end=e,
            state=state,
            left_percent=(s - start).total_seconds() * 100 / span,
            width_percent=(e - s).total_seconds() * 100 / span,
        )
        for s, e, state in pieces
    ]


@dataclass(frozen=True)
class SignatureRow:
    signature: Signature
    batch_status: str | None
    # From the batch first being seen by the control plane to this signature arriving.
    latency_seconds: float | None


@dataclass(frozen=True)
class OperatorDetail:
    operator: Operator
    liveness: OperatorLiveness | None
    share_percent: float | None
    window_name: str
    window_start: datetime
    window_end: datetime
    segments: list[UptimeSegment]
    downtime: list[tuple[datetime, datetime | None]]
    state_changes: list[OperatorStateChange]
    signatures: list[SignatureRow]
    signature_counts: dict[str, int]
    missed_batches: list[Batch]
    missed_count: int
    owed_batches: list[Batch]
    last_known_good_block: int | None
    catchup_tasks: list[Any]
    catchup_runs: list[Any]

    @property
    def state(self) -> str:
        return self.liveness.state if self.liveness else OperatorState.UNKNOWN.value

    @property
    def uptime_percent(self) -> float | None:
        """Up or degraded, over the part of the window whose state is known."""
        known = sum(s.seconds for s in self.segments if s.state != OperatorState.UNKNOWN)
        live = sum(s.seconds for s in self.segments if s.state in (OperatorState.UP, OperatorState.DEGRADED))
        return live * 100 / known if known > 0 else None

    @property
    def downtime_seconds(self) -> float:
        return sum(s.seconds for s in self.segments if s.state == OperatorState.DOWN)

    @property
    def open_catchup(self) -> Any | None:
        from recovery.models import OPEN_STATUSES

        return next((t for t in self.catchup_tasks if t.status in OPEN_STATUSES), None)

    @property
    def chart(self) -> dict[str, list[float]]:
        """Signature latency over time for uPlot (oldest first)."""
        points = sorted(
            (r.signature.received_at.timestamp(), r.latency_seconds)
            for r in self.signatures
            if r.latency_seconds is not None
        )
        return {"x": [p[0] for p in points], "latency": [p[1] for p in points]}


def _signature_rows(operator_id: str) -> list[SignatureRow]:
    signatures = list(
        Signature.objects.filter(operator_id=operator_id).order_by("-received_at", "-id")[:SIGNATURE_HISTORY]
    )
    batches = {
        b["identifier"]: b
        for b in Batch.objects.filter(identifier__in={s.batch_identifier for s in signatures}).values(
            "identifier", "status", "first_seen_at"
        )
    }
    rows = []
    for s in signatures:
        batch = batches.get(s.batch_identifier)
        latency = (s.received_at - batch["first_seen_at"]).total_seconds() if batch else None
        rows.append(
            SignatureRow(
                signature=s,
                batch_status=batch["status"] if batch else None,
                latency_seconds=None if latency is None else max(0.0, latency),
            )
        )
    return rows


def operator_detail(
    *, operator_id: str, window: str = DEFAULT_WINDOW, now: datetime | None = None
) -> OperatorDetail | None:
    """Everything the operator page shows (about fifteen small queries)."""
    from recovery.models import RecoveryKind, RecoveryRun, RecoveryTask
    from recovery.services.catchup import operator_catchup_batches, operator_last_known_good_block

    operator = Operator.objects.filter(operator_id=operator_id).first()
    if operator is None:
        return None
    now = now or timezone.now()
    window = window if window in UPTIME_WINDOWS else DEFAULT_WINDOW
    start = now - UPTIME_WINDOWS[window]
    total = operator_total_current_stake()
    share = operator_stake_share(operator=operator, total=total)
    # Missed in the window the page shows (24 h, 7 d or 30 d), not in the operator's whole history.
    missed = operator_missed_batches(operator_id=operator.operator_id, since=start)
    owed = operator_catchup_batches(operator_id=operator.operator_id) if operator.registered else []
    return OperatorDetail(
        operator=operator,
        liveness=OperatorLiveness.objects.filter(operator_id=operator.operator_id).first(),
        share_percent=None if share is None else float(share * 100),
        window_name=window,
        window_start=start,
        window_end=now,
        segments=uptime_segments(operator_id=operator.operator_id, start=start, end=now),
        downtime=operator_downtime_windows(operator_id=operator.operator_id, since=start),
        state_changes=list(
            OperatorStateChange.objects.filter(operator_id=operator.operator_id).order_by("-since", "-id")[
                :20
            ]
        ),
        signatures=_signature_rows(operator.operator_id),
        signature_counts=operator_signature_counts(operator_id=operator.operator_id),
        missed_batches=list(missed[:MISSED_SHOWN]),
        missed_count=missed.count(),
        owed_batches=owed,
        last_known_good_block=operator_last_known_good_block(operator_id=operator.operator_id),
        catchup_tasks=list(
            RecoveryTask.objects.filter(kind=RecoveryKind.CATCHUP, subject=operator.operator_id).order_by(
                "-id"
            )[:5]
        ),
        catchup_runs=list(
            RecoveryRun.objects.filter(kind=RecoveryKind.CATCHUP, scope=operator.operator_id).order_by("-id")[
                :5
            ]
        ),
    )
