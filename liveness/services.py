"""Liveness services: probe every registered operator, record what was seen, and count signatures as signs of life.

Each state change (up, degraded, down) closes the operator's open OperatorStateChange and opens a new one, in
the same transaction as the OperatorLiveness update, under a row lock: two recorders can never flip it twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from controlplane.changes import change_announce, operator_state_changed
from ledger.models import Operator
from liveness.models import OperatorLiveness, OperatorState, OperatorStateChange
from liveness.probe import ERROR_MAX, NODE_VERSION_MAX, ProbeResult, probe_operator

SIGN_OF_LIFE_REASON = "its signature verified"
# How long past its probes' own deadlines a round waits for threads that cannot be interrupted (DNS lookups).
ROUND_GRACE = 1.0
LIVE_STATES = (OperatorState.UP, OperatorState.DEGRADED)


@dataclass(frozen=True)
class ProbeOutcome:
    """One operator's probe in a round, and what it did to the operator's recorded state."""

    operator_id: str
    socket: str
    probe: ProbeResult
    previous_state: OperatorState
    state: OperatorState

    @property
    def changed(self) -> bool:
        return self.state != self.previous_state

    def describe(self) -> str:
        return f"{self.operator_id} {self.previous_state} -> {self.state} (node API: {self.probe.reason})"


def _liveness_lock(*, operator_id: str, at: datetime) -> OperatorLiveness:
    """The operator's liveness row, locked until the transaction ends; created (unknown) when missing."""
    liveness = OperatorLiveness.objects.select_for_update().filter(operator_id=operator_id).first()
    if liveness is None:
        OperatorLiveness.objects.bulk_create(
            [OperatorLiveness(operator_id=operator_id, since=at)], ignore_conflicts=True
        )
        liveness = OperatorLiveness.objects.select_for_update().get(operator_id=operator_id)
    return liveness


def _liveness_flip(*, liveness: OperatorLiveness, state: OperatorState, reason: str, at: datetime) -> None:
    """Close the open state-change row and open one for ``state`` (the caller saves ``liveness``)."""
    # Never before the current state began, so the rows of one operator always form ordered windows.
    since = max(at, liveness.since)
    OperatorStateChange.objects.filter(operator_id=liveness.operator_id, until__isnull=True).update(
        until=since
    )
    OperatorStateChange.objects.create(
        operator_id=liveness.operator_id, state=state, since=since, reason=reason[:ERROR_MAX]
    )
    change_announce(
        operator_state_changed,
        operator_id=liveness.operator_id,
        state=state,
        previous=liveness.state,
        since=since,
    )
    liveness.state = state
    liveness.since = since


def _liveness_apply(
    *, operator_id: str, state: OperatorState, reason: str, node_version: str, at: datetime
) -> tuple[OperatorState, OperatorState]:
    """Record one probe result; returns the operator's state before and after."""
    with transaction.atomic():
        liveness = _liveness_lock(operator_id=operator_id, at=at)
        previous = OperatorState(liveness.state)
        liveness.last_probe_at = at if liveness.last_probe_at is None else max(at, liveness.last_probe_at)
        if node_version:
            liveness.node_version = node_version[:NODE_VERSION_MAX]
        target: OperatorState | None = None
        if state == OperatorState.DOWN:
            liveness.last_error = reason[:ERROR_MAX]
            # A failure seen before the latest sign of life (a signature accepted while the probe was out) is stale.
            if liveness.last_seen_at is None or at > liveness.last_seen_at:
                liveness.consecutive_failures += 1
                if liveness.consecutive_failures >= settings.LIVENESS_DOWN_AFTER:
                    target = OperatorState.DOWN
        else:
            liveness.consecutive_failures = 0
            liveness.last_error = "" if state == OperatorState.UP else reason[:ERROR_MAX]
            liveness.last_seen_at = at if liveness.last_seen_at is None else max(at, liveness.last_seen_at)
            target = state
        if target is not None and target != previous:
            _liveness_flip(liveness=liveness, state=target, reason=reason, at=at)
        liveness.save()
        return previous, OperatorState(liveness.state)


def operator_liveness_record(
    *,
    operator_id: str,
    state: OperatorState,
    reason: str,
    node_version: str = "",
    at: datetime | None = None,
) -> bool:
    """Record one probe of ``operator_id``; True when its state changed.

    Up and degraded take effect at once; down only after ``LIVENESS_DOWN_AFTER`` consecutive failures.
    """
    previous, current = _liveness_apply(
        operator_id=operator_id.lower(),
        state=state,
        reason=reason,
        node_version=node_version,
        at=at or timezone.now(),
    )
    return previous != current


def operator_sign_of_life(*, operator_id: str, at: datetime | None = None) -> None:
    """A verified signature: the operator is alive (a post in its name is not: anyone can make one). One
    UPDATE when it is already up or degraded."""
    operators_sign_of_life(operator_ids=[operator_id], at=at)


def operators_sign_of_life(*, operator_ids: Iterable[str], at: datetime | None = None) -> None:
    """``operator_sign_of_life`` for every operator a verifier pass verified: one UPDATE for all of them that are
    already up or degraded, and a state change (in operator order) for each of the others."""
    at = at or timezone.now()
    ids = sorted({operator_id.lower() for operator_id in operator_ids})
    if not ids:
        return
    with connection.cursor() as cursor:
        # GREATEST skips NULL; an operator that turned down meanwhile is not updated, and flips below.
        cursor.execute(
            f"""UPDATE {OperatorLiveness._meta.db_table} SET last_seen_at = GREATEST(last_seen_at, %s),
                consecutive_failures = 0
            WHERE operator_id = ANY(%s) AND state = ANY(%s) RETURNING operator_id""",
            [at, ids, [str(state) for state in LIVE_STATES]],
        )
        live = {operator_id for (operator_id,) in cursor.fetchall()}
    rest = [operator_id for operator_id in ids if operator_id not in live]
    if not rest:
        return
    with transaction.atomic():
        for operator_id in rest:
            liveness = _liveness_lock(operator_id=operator_id, at=at)
            liveness.last_seen_at = at if liveness.last_seen_at is None else max(at, liveness.last_seen_at)
            liveness.consecutive_failures = 0
            if liveness.state not in LIVE_STATES:
                _liveness_flip(liveness=liveness, state=OperatorState.UP, reason=SIGN_OF_LIFE_REASON, at=at)
            liveness.save()


def _probe_timed(*, socket: str, timeout: float) -> tuple[datetime, ProbeResult]:
    return timezone.now(), probe_operator(socket=socket, timeout=timeout)


def _probe_settled(
    *, future: Future[tuple[datetime, ProbeResult]], timeout: float, round_started: datetime
) -> tuple[datetime, ProbeResult]:
    """The probe's result; down when it did not finish by the round's deadline (never blocks)."""
    if future.done() and not future.cancelled():
        exc = future.exception()
        if exc is None:
            return future.result()
        error = f"probe failed: {type(exc).__name__}: {exc}"
    else:
        error = f"no answer within {timeout:g}s"
    return round_started, ProbeResult(state=OperatorState.DOWN, error=error[:ERROR_MAX], latency=timeout)


def operators_probe(*, timeout: float | None = None, concurrency: int | None = None) -> list[ProbeOutcome]:
    """Probe every registered operator that has a socket, at most ``concurrency`` at a time, and record each.

    Each probe answers within ``timeout``, so one dead operator never delays the others; a probe that still
    has not returned when the round's deadline passes (a hanging DNS lookup) is recorded as down.
    """
    timeout = settings.LIVENESS_PROBE_TIMEOUT if timeout is None else timeout
    concurrency = settings.LIVENESS_PROBE_CONCURRENCY if concurrency is None else concurrency
    operators = list(
        Operator.objects.filter(registered=True)
        .exclude(socket="")
        .order_by("operator_id")
        .values_list("operator_id", "socket")
    )
    if not operators:
        return []
    workers = max(1, min(concurrency, len(operators)))
    round_started = timezone.now()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="liveness-probe")
    try:
        futures: list[Future[tuple[datetime, ProbeResult]]] = [
            executor.submit(_probe_timed, socket=socket, timeout=timeout) for _, socket in operators
        ]
        wait(futures, timeout=math.ceil(len(operators) / workers) * timeout + ROUND_GRACE)
    finally:
        # Never wait for a stuck thread: it finishes on its own and its result is dropped.
        executor.shutdown(wait=False, cancel_futures=True)

    outcomes = []
    for (operator_id, socket), future in zip(operators, futures, strict=True):
        at, result = _probe_settled(future=future, timeout=timeout, round_started=round_started)
        previous, current = _liveness_apply(
            operator_id=operator_id,
            state=result.state,
            reason=f"node API: {result.reason}",
            node_version=result.node_version,
            at=at,
        )
        outcomes.append(
            ProbeOutcome(
                operator_id=operator_id, socket=socket, probe=result, previous_state=previous, state=current
            )
        )
    return outcomes


def liveness_forget_chain(**_: object) -> None:
    """The chain was replaced (``ledger.chain_replaced``): its operators' liveness history is not the new one's."""
    OperatorStateChange.objects.all().delete()
    OperatorLiveness.objects.all().delete()
