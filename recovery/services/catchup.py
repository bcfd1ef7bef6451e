"""Operator catch-up: ask an operator that came back to (re)verify exactly the batches it still owes.

The batches an operator owes are the pending ones it has no valid signature for (pending, verified or waiting
for its batch all count as given; invalid and expired ones do not), on which it had stake at the batch's
``taskCreatedBlock`` (else its signature could not count), and that it has not refused on purpose. Batches it
signed are never sent again.

It is asked again about a batch it still owes for as long as the batch is pending: giving up could lose the
batch. Each ask comes later than the one before: after the catch-up grace, then twice that, and so on up to
RECOVERY_CATCHUP_ASK_CAP. An operator that refuses a batch on purpose (it found a bad proof) says so in its
answer; that is recorded as a BatchRefusal, and the batch is neither owed by it nor asked about again.

Its *last known-good point* is the newest batch it signed before its oldest missing one: everything up to there
it kept up with. It is deliberately not simply its newest signed batch: an operator that restarts signs the
new batches at once, and taking its newest signature as the point would hide, forever, the very batches it
missed while it was down.

Asks are rows (CatchupAsk: operator, batch, how many, when last), so the spacing holds across tasks and
replicas: Postgres is the truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from controlplane.outbound import OutboundError, OutboundRefused, Target, operator_target, request
from intake.models import BatchRefusal, SignatureStatus
from ledger.models import Batch, BatchStatus, Operator
from ledger.selectors import stake_at_block_sql
from liveness.models import OperatorState
from recovery.models import OPEN_STATUSES, CatchupAsk, RecoveryKind, RecoveryTask
from recovery.services.tasks import Outcome, recovery_tasks_request

logger = logging.getLogger("recovery")

# The operator's control endpoint takes at most this many batches per request.
CONTROL_MAX_BATCHES = 100
# One run sends at most this many requests; the rest go in the task's next run.
MAX_REQUESTS_PER_RUN = 20
CONTROL_PATH = "/control/verify"

# Signatures that count as the operator's own: verification has not rejected them.
_SIGNED = (SignatureStatus.PENDING, SignatureStatus.VERIFIED)
_GIVEN = (*_SIGNED, SignatureStatus.WAITING)
# Operators worth asking: live, or never probed; a down one cannot answer.
_ASKABLE_STATES = (OperatorState.UP, OperatorState.DEGRADED, OperatorState.UNKNOWN)


def _params(**extra: Any) -> dict[str, Any]:
    return {
        "pending": BatchStatus.PENDING.value,
        "signed": [str(s) for s in _SIGNED],
        "given": [str(s) for s in _GIVEN],
        "catchup": RecoveryKind.CATCHUP.value,
        **extra,
    }


def _owed(operator: str) -> str:
    """SQL condition on ``monitoring_batch b``: the batch is one ``operator`` (an SQL expression) still owes."""
    return f"""
        b.status = %(pending)s
        AND NOT EXISTS (
            SELECT 1 FROM monitoring_signature s
            WHERE s.batch_identifier = b.identifier AND s.operator_id = {operator} AND s.status = ANY(%(given)s)
        )
        AND COALESCE({stake_at_block_sql(operator=operator, block="b.task_created_block")}, 0) > 0
        AND NOT EXISTS (
            SELECT 1 FROM monitoring_batchrefusal r
            WHERE r.batch_identifier = b.identifier AND r.operator_id = {operator}
        )
    """


# --------------------------------------------------------------------------------------------- tokens


def operator_control_token(*, operator_id: str) -> str | None:
    """The bearer token for the operator's control endpoint (OPERATOR_CONTROL_TOKENS, resolved in settings)."""
    return settings.OPERATOR_CONTROL_TOKENS.get(operator_id.strip().lower()) or None


# ------------------------------------------------------------------------------------------- selectors


# How far back the last known-good point is looked for: a bounded walk down the newest batches, not a scan of the
# operator's whole signature history (which retention prunes anyway).
KNOWN_GOOD_LOOKBACK = 10_000


def operator_last_known_good_block(*, operator_id: str) -> int | None:
    """The created block of the newest batch the operator signed before its oldest owed batch.

    With nothing owed, its newest signed batch; None if it never signed (before its first miss) within the
    KNOWN_GOOD_LOOKBACK batches below that point.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT kb.created_block FROM (
                SELECT b.identifier, b.created_block FROM monitoring_batch b
                WHERE b.created_block < COALESCE(
                    (SELECT min(b.created_block) FROM monitoring_batch b WHERE {_owed("%(operator)s")}),
                    9223372036854775807
                )
                ORDER BY b.created_block DESC, b.id DESC LIMIT %(lookback)s
            ) kb
            WHERE EXISTS (
                SELECT 1 FROM monitoring_signature ks
                WHERE ks.batch_identifier = kb.identifier AND ks.operator_id = %(operator)s
                    AND ks.status = ANY(%(signed)s)
            )
            ORDER BY kb.created_block DESC LIMIT 1
            """,
            _params(operator=operator_id.strip().lower(), lookback=KNOWN_GOOD_LOOKBACK),
        )
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


def operator_catchup_batches(*, operator_id: str) -> list[Batch]:
    """The batches the operator still owes, oldest first.

    Pending, created at or after its last known-good point (which lies below its oldest owed batch), without a
    signature of its own that verification has not rejected, with stake at their taskCreatedBlock, and not
    refused by it on purpose.
    """
    query = f"SELECT b.* FROM monitoring_batch b WHERE {_owed('%(operator)s')} ORDER BY b.created_block, b.id"
    return list(Batch.objects.raw(query, _params(operator=operator_id.strip().lower())))


# ---------------------------------------------------------------------------------------------- detection


def catchups_request() -> int:
    """Request a catch-up for every askable operator lagging behind; returns how many tasks were created.

    Askable: registered, with a socket, up, degraded or never probed, and without an open catch-up task.
    Lagging: it owes a pending batch first seen more than RECOVERY_CATCHUP_GRACE seconds ago (younger ones it
    may still be processing by itself). One query finds them all.
    """
    cutoff = timezone.now() - timedelta(seconds=float(settings.RECOVERY_CATCHUP_GRACE))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT o.operator_id FROM monitoring_operator o
            LEFT JOIN monitoring_operatorliveness l ON l.operator_id = o.operator_id
            WHERE o.registered AND o.socket <> ''
                AND (l.id IS NULL OR l.state = ANY(%(askable)s))
                AND NOT EXISTS (
                    SELECT 1 FROM recovery_recoverytask ot
                    WHERE ot.kind = %(catchup)s AND ot.subject = o.operator_id AND ot.status = ANY(%(open)s)
                )
                AND EXISTS (
                    SELECT 1 FROM monitoring_batch b WHERE b.first_seen_at < %(cutoff)s AND {_owed("o.operator_id")}
                )
            ORDER BY o.operator_id
            """,
            _params(
                askable=[str(s) for s in _ASKABLE_STATES],
                open=[str(s) for s in OPEN_STATUSES],
                cutoff=cutoff,
            ),
        )
        lagging = [str(row[0]) for row in cursor.fetchall()]
    return recovery_tasks_request(
        kind=RecoveryKind.CATCHUP,
        subjects=lagging,
        reason=f"lacks its signature on pending batches older than {settings.RECOVERY_CATCHUP_GRACE:g}s",
    )


# ---------------------------------------------------------------------------------------------- execution


class _ControlError(Exception):
    pass


# A control endpoint's answer is small JSON; anything bigger is refused unread.
CONTROL_ANSWER_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class _ControlAnswer:
    accepted: int
    skipped: int
    refused: dict[str, str]  # batch identifier -> the operator's reason


def _control_verify(*, target: Target, token: str, batches: Sequence[Batch]) -> _ControlAnswer:
    """One control request. Raises _ControlError with a reason fit for last_error (never the remote's words)."""
    body = {
        "batches": [
            {"batchMerkleRoot": b.merkle_root, "senderAddress": b.sender, "batchDataPointer": b.data_pointer}
            for b in batches
        ]
    }
    where = target.origin
    try:
        response = request(
            "POST",
            target,
            CONTROL_PATH,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=float(settings.AGGREGATOR_TIMEOUT),
            max_bytes=CONTROL_ANSWER_MAX_BYTES,
            secret=True,
        )
    except OutboundError as exc:
        raise _ControlError(f"control endpoint {where} unreachable: {exc.reason}") from None
    if response.status in (401, 403):
        raise _ControlError(f"the operator refused the control token (HTTP {response.status} from {where})")
    if response.status not in (200, 202):
        raise _ControlError(f"control request refused: HTTP {response.status} from {where}")
    try:
        answer = json.loads(response.body)
        accepted, skipped = int(answer.get("accepted", 0)), int(answer.get("skipped", 0))
    except (ValueError, AttributeError, TypeError):
        return _ControlAnswer(accepted=len(batches), skipped=0, refused={})  # acknowledged, in other words
    by_key = {(b.merkle_root, b.sender): b.identifier for b in batches}
    refused: dict[str, str] = {}
    for entry in answer.get("refused") or []:
        if not isinstance(entry, dict):
            continue
        root = str(entry.get("batchMerkleRoot") or "").lower()
        sender = str(entry.get("senderAddress") or "").lower()
        identifier = by_key.get((root, sender))
        if identifier is not None:  # only batches this request asked about
            refused[identifier] = str(entry.get("reason") or "refused")[:500]
    return _ControlAnswer(accepted=accepted, skipped=skipped, refused=refused)


def _ask_spacing(asks: int) -> float:
    """Seconds before a batch asked about ``asks`` times is asked again: the grace, doubling, capped."""
    grace = max(1.0, float(settings.RECOVERY_CATCHUP_GRACE))
    return float(min(float(settings.RECOVERY_CATCHUP_ASK_CAP), grace * 2 ** max(0, asks - 1)))


def _asks_record(*, operator_id: str, identifiers: Sequence[str]) -> None:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recovery_catchupask (operator_id, batch_identifier, asks, first_asked_at, last_asked_at)
            SELECT %(operator)s, unnest(%(ids)s::text[]), 1, %(now)s, %(now)s
            ON CONFLICT (operator_id, batch_identifier)
            DO UPDATE SET asks = recovery_catchupask.asks + 1, last_asked_at = EXCLUDED.last_asked_at
            """,
            {"operator": operator_id, "ids": list(identifiers), "now": now},
        )


def _refusals_record(*, operator_id: str, refused: Mapping[str, str]) -> None:
    BatchRefusal.objects.bulk_create(
        [
            BatchRefusal(operator_id=operator_id, batch_identifier=identifier, reason=reason)
            for identifier, reason in refused.items()
        ],
        ignore_conflicts=True,
    )
    for identifier, reason in refused.items():
        logger.info("operator %s refused batch %s on purpose: %s", operator_id[:18], identifier[:18], reason)


def catchup_execute(task: RecoveryTask) -> Outcome:
    """Ask the operator (task.subject) to verify what it owes, in chunks; done once nothing is owed any more.

    A batch is asked about once its grace has passed, and again each time its spacing has passed without its
    signature; meanwhile the task retries with backoff, waiting for the signatures.
    """
    operator_id = task.subject.strip().lower()
    owed = operator_catchup_batches(operator_id=operator_id)
    now = timezone.now()
    cutoff = now - timedelta(seconds=float(settings.RECOVERY_CATCHUP_GRACE))
    asks = {
        ask.batch_identifier: ask
        for ask in CatchupAsk.objects.filter(
            operator_id=operator_id, batch_identifier__in=[b.identifier for b in owed]
        )
    }

    def ask_due(batch: Batch) -> bool:
        ask = asks.get(batch.identifier)
        if ask is None:
            return batch.first_seen_at <= cutoff
        return (now - ask.last_asked_at).total_seconds() >= _ask_spacing(ask.asks)

    totals = {key: int(task.result.get(key) or 0) for key in ("requests", "accepted", "skipped", "refused")}

    asked = set(asks)

    def state(**extra: object) -> dict[str, object]:
        """Totals over the task's runs; ``outstanding``: owed batches asked about and not yet signed."""
        outstanding = sum(1 for b in owed if b.identifier in asked)
        return {**totals, "owed": len(owed), "outstanding": outstanding, **extra}

    if not owed:
        return Outcome.done("nothing to catch up", **state())
    due = [b for b in owed if ask_due(b)]
    if not due:
        waiting = sum(1 for b in owed if b.identifier in asks)
        detail = f"waiting for {waiting} asked batches to be signed" if waiting else "waiting for the grace"
        return Outcome.retry(detail, **state(last_checked=now.isoformat()))

    operator = Operator.objects.filter(operator_id=operator_id).first()
    if operator is None or not operator.registered or not operator.socket:
        return Outcome.retry(
            f"operator {operator_id} has no registered socket to send a catch-up to", **state()
        )
    token = operator_control_token(operator_id=operator_id)
    if not token:
        return Outcome.retry(
            f"no control token for operator {operator_id} (OPERATOR_CONTROL_TOKENS)",
            **state(),
        )

    try:
        target = operator_target(operator.socket)
    except OutboundRefused as exc:
        return Outcome.retry(f"operator {operator_id[:18]}: {exc.reason}", **state())
    chunk = max(1, min(int(settings.CATCHUP_CHUNK), CONTROL_MAX_BATCHES))
    sent = accepted = skipped = requests_made = 0
    refused: dict[str, str] = {}
    error = ""
    for start in range(0, len(due), chunk):
        if requests_made >= MAX_REQUESTS_PER_RUN:
            break
        part = due[start : start + chunk]
        try:
            answer = _control_verify(target=target, token=token, batches=part)
        except _ControlError as exc:
            error = str(exc)
            break
        requests_made += 1
        _asks_record(operator_id=operator_id, identifiers=[b.identifier for b in part])
        asked.update(b.identifier for b in part)
        _refusals_record(operator_id=operator_id, refused=answer.refused)
        sent += len(part)
        accepted += answer.accepted
        skipped += answer.skipped
        refused.update(answer.refused)
    totals["requests"] += requests_made
    totals["accepted"] += accepted
    totals["skipped"] += skipped
    totals["refused"] += len(refused)
    if error:
        detail = error if not sent else f"{error} (after asking for {sent} batches)"
        return Outcome.retry(detail, **state())
    logger.info(
        "catch-up of %s: asked for %d batches in %d requests (%d accepted, %d skipped, %d refused)",
        operator_id[:18],
        sent,
        requests_made,
        accepted,
        skipped,
        len(refused),
    )
    return Outcome.retry(f"asked for {sent} batches; waiting for their signatures", **state())
