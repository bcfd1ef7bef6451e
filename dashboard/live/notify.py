"""The change messages services send, one function per kind, so each service adds a single line.

Every function only registers work for after the commit (see ``publish``) and never raises. The message shapes
are documented in ``dashboard.live``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dashboard.live.publish import live_notify, live_notify_built, live_notify_merged

if TYPE_CHECKING:
    from alerts.models import Alert
    from ledger.ingest.ledger import EventRow
    from progress.models import BatchProgress
    from progress.services import ProgressState
    from recovery.models import RecoveryRun, RecoveryTask

logger = logging.getLogger("dashboard.live")

# More batch events than this in one ingest chunk (a backfill) become one ``ingest.backfill`` summary.
BATCH_MESSAGES_PER_CHUNK = 20
NEW_BATCH_EVENTS = ("NewBatchV3", "NewBatchV2")


def _wei(value: Decimal | int | None) -> str | None:
    return None if value is None else str(int(value))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- Signatures ----------------------------------------------------------------------------------


def live_signature_accepted(
    *,
    signature_id: int,
    batch_identifier: str,
    operator_id: str,
    status: str,
    stake: Decimal | None,
    conflicting: bool,
) -> None:
    """An operator's signature was stored (``stake``: its stake at the batch's taskCreatedBlock, when known)."""
    live_notify(
        kind="signature.accepted",
        batch=batch_identifier,
        operator=operator_id,
        data={
            "signature_id": signature_id,
            "stake": _wei(stake),
            "status": status,
            "conflicting": conflicting,
        },
    )


def live_signatures_checked(
    *,
    batch_identifier: str,
    signatures: Iterable[tuple[int, str]],
    valid_ids: Sequence[int],
    invalid_reasons: Mapping[int, str],
) -> None:
    """One message per verified or rejected signature of a verification pass; ``signatures``: (id, operatorId).

    Each carries the operator's stake at the batch's taskCreatedBlock; a rejected one also ``signer_status``, the
    operator's standing on the batch after it ("verified" or "pending" when another signature of its counts,
    else null), so a client never strikes out a signer for a forgery sent in its name. Rejections go first.
    """
    valid = set(valid_ids)
    checked = [(i, o) for i, o in signatures if i in valid or i in invalid_reasons]
    if checked:
        live_notify_merged(
            label="signature.checked",
            item=(batch_identifier, checked, valid, dict(invalid_reasons)),
            build_many=_checked_messages,
        )


def _checked_messages(
    items: list[tuple[str, list[tuple[int, str]], set[int], dict[int, str]]],
) -> list[dict[str, Any]]:
    """The messages of ``live_signatures_checked`` for every batch a transaction checked, in three queries."""
    from intake.models import Signature, SignatureStatus
    from ledger.models import Batch
    from ledger.selectors import operator_stakes_at_blocks

    blocks = dict(
        Batch.objects.filter(identifier__in={item[0] for item in items}).values_list(
            "identifier", "task_created_block"
        )
    )
    stakes_at = operator_stakes_at_blocks(block_numbers=blocks.values())
    rejected = {(batch, o) for batch, checked, _, reasons in items for i, o in checked if i in reasons}
    standing: dict[tuple[str, str], str] = {}
    if rejected:
        for batch, operator_id, status in Signature.objects.filter(
            batch_identifier__in={b for b, _ in rejected},
            operator_id__in={o for _, o in rejected},
            status__in=(SignatureStatus.VERIFIED, SignatureStatus.PENDING),
        ).values_list("batch_identifier", "operator_id", "status"):
            if standing.get((batch, operator_id)) != SignatureStatus.VERIFIED:
                standing[(batch, operator_id)] = status
    messages = []
    for batch, checked, valid, reasons in items:
        stakes = stakes_at[blocks[batch]] if batch in blocks else {}
        for signature_id, operator_id in sorted(checked, key=lambda c: c[0] in valid):
            data: dict[str, Any] = {"signature_id": signature_id, "stake": _wei(stakes.get(operator_id))}
            if signature_id in valid:
                data["status"] = "verified"
            else:
                data.update(
                    status="invalid",
                    reason=reasons[signature_id],
                    signer_status=standing.get((batch, operator_id)),
                )
            kind = f"signature.{data['status']}"
            messages.append({"kind": kind, "batch": batch, "operator": operator_id, "data": data})
    return messages


# --- Progress ------------------------------------------------------------------------------------


def live_progress_notify(*, identifier: str, progress: BatchProgress, before: ProgressState) -> None:
    """After a refresh: ``progress`` when anything it reports moved, and ``quorum.reached`` when quorum flipped.

    Nothing is sent when nothing changed, so the periodic refresh of every pending batch stays silent.
    """
    from progress.services import progress_state

    after = progress_state(progress)
    if after == before:
        return
    live_notify_merged(label="progress", item=identifier, build_many=_progress_messages)
    if before[4] is None and after[4] is not None:
        live_notify(
            kind="quorum.reached",
            batch=identifier,
            data={
                "quorum_reached_at": _iso(after[4]),
                "signed_stake": _wei(after[1]),
                "total_stake": _wei(after[0]),
                "threshold_percentage": after[5],
            },
        )


def _progress_messages(identifiers: list[str]) -> list[dict[str, Any]]:
    """A ``progress`` message per batch whose progress a transaction moved, built in the queries of one."""
    from dashboard.live.snapshots import live_progress_data_many

    data = live_progress_data_many(identifiers=identifiers)
    return [
        {"kind": "progress", "batch": identifier, "operator": None, "data": data[identifier]}
        for identifier in dict.fromkeys(identifiers)
        if identifier in data
    ]


# --- Ledger --------------------------------------------------------------------------------------


def live_ledger_applied(
    *, rows: Sequence[EventRow], new_batch_events: int, fresh: Sequence[EventRow]
) -> None:
    """Batches created and verified by one ingest chunk: a message each, or one summary for a backfill.

    ``rows`` are the chunk's decoded events (NewBatch rows are applied in SQL, which reports only how many were
    new); ``fresh`` are its other events that were new. Re-sending ``batch.created`` for a batch that was already
    known is harmless: the data is absolute.
    """
    created = {r.subject: r for r in rows if r.name in NEW_BATCH_EVENTS} if new_batch_events else {}
    verified = {r.subject: r for r in fresh if r.name == "BatchVerified"}
    if not created and not verified:
        return
    if len(created) + len(verified) > BATCH_MESSAGES_PER_CHUNK:
        last = max(r.log.block_number for r in [*created.values(), *verified.values()])
        live_notify(
            kind="ingest.backfill",
            data={"batches_created": len(created), "batches_verified": len(verified), "to_block": last},
        )
        return
    for identifier, row in created.items():
        live_notify(
            kind="batch.created",
            batch=identifier,
            data={
                "identifier": identifier,
                "status": "pending",
                "created_block": row.log.block_number,
                "task_created_block": int(row.args["taskCreatedBlock"]),
                "signed_percent": 0.0,
                "pending_percent": 0.0,
                "at_risk": False,
                "quorum_reached": False,
            },
        )
    for identifier, row in verified.items():
        live_notify(
            kind="batch.verified",
            batch=identifier,
            data={
                "identifier": identifier,
                "status": "verified",
                "verified_block": row.log.block_number,
                "verified_tx": row.log.transaction_hash,
            },
        )


# --- Operators -----------------------------------------------------------------------------------


def live_operator_state(*, operator_id: str, state: str, previous: str, since: datetime) -> None:
    """An operator's liveness flipped; carries the stake online share as committed."""
    from dashboard.live.snapshots import live_stake_online_percent

    def build() -> dict[str, Any]:
        return {
            "state": str(state),
            "previous": str(previous),
            "since": since.isoformat(),
            "stake_online_percent": live_stake_online_percent(),
        }

    live_notify_built(kind="operator.state", operator=operator_id, build=build)


# --- Recovery ------------------------------------------------------------------------------------


def live_recovery_run(*, run: RecoveryRun) -> None:
    """A staff recovery run was recorded (dry or not), with its outcome."""
    from recovery.models import RecoveryKind

    scope = run.scope if run.scope.startswith("0x") else None
    live_notify(
        kind="recovery.run",
        batch=scope if run.kind == RecoveryKind.REPLAY else None,
        operator=scope if run.kind == RecoveryKind.CATCHUP else None,
        data={
            "run_id": run.id,
            "kind": run.kind,
            "scope": run.scope,
            "dry_run": run.dry_run,
            "requested_by": run.requested_by,
            "outcome": run.outcome,
            "created_at": _iso(run.created_at),
        },
    )


# The task's status after each action.
_TASK_STATUS = {"requested": "pending", "retry": "pending", "done": "done", "cancel": "cancelled"}


def live_recovery_task(*, task: RecoveryTask, action: str, detail: str = "") -> None:
    """A recovery task was requested (``action`` "requested") or settled ("done", "retry", "cancel").

    Forward tasks (one per batch and verifier pass) are announced only when an attempt failed or they were
    cancelled: the happy path is already visible as ``signature.verified``.
    """
    from recovery.models import RecoveryKind

    if task.kind == RecoveryKind.FORWARD and action in ("requested", "done"):
        return
    live_notify(
        kind="recovery.task",
        batch=task.subject.partition(":")[0]
        if task.kind in (RecoveryKind.REPLAY, RecoveryKind.FORWARD)
        else None,
        operator=task.subject if task.kind == RecoveryKind.CATCHUP else None,
        data={
            "task_id": task.id,
            "kind": task.kind,
            "subject": task.subject,
            "action": action,
            "status": _TASK_STATUS.get(action, action),
            "attempts": task.attempts,
            "detail": detail[:500],
        },
    )


# --- Alerts --------------------------------------------------------------------------------------


def live_alert(*, alert: Alert, kind: str) -> None:
    """An alert opened or resolved (``kind``: "alert.opened" or "alert.resolved")."""
    from alerts.payload import BATCH_KINDS, OPERATOR_KINDS

    live_notify(
        kind=kind,
        batch=alert.subject if alert.kind in BATCH_KINDS else None,
        operator=alert.subject if alert.kind in OPERATOR_KINDS else None,
        data={
            "id": alert.id,
            "kind": alert.kind,
            "severity": alert.severity,
            "subject": alert.subject,
            "summary": alert.summary,
        },
    )


# --- Receivers -----------------------------------------------------------------------------------


def live_receivers_connect() -> None:
    """Relay each change announced through ``controlplane.changes`` to the live sockets."""
    from controlplane import changes

    relays: dict[Any, Any] = {
        changes.ledger_applied: live_ledger_applied,
        changes.signature_accepted: live_signature_accepted,
        changes.signatures_checked: live_signatures_checked,
        changes.progress_refreshed: live_progress_notify,
        changes.operator_state_changed: live_operator_state,
        changes.recovery_run_recorded: live_recovery_run,
        changes.recovery_task_changed: live_recovery_task,
        changes.alert_changed: live_alert,
    }
    for signal, relay in relays.items():
        changes.change_listen(signal, relay, uid=f"live.{relay.__name__}")
