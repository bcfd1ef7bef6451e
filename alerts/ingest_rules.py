"""Ingest rules: the ledger trailing the chain (lag), not following it at all (stopped), a fork it cannot repair.

Lag and "stopped" compare the ingest cursors with the head the node reports now; a deep reorg is read from the
ingester's own incident rows and stays open until the cursor it stranded moves (a reset, or a manual repair).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from alerts.conditions import Condition, Rule, short
from alerts.models import Alert, AlertKind, AlertSeverity
from alerts.observe import ChainView, CursorView, RuleContext
from ledger.models import IngestCursor, IngestIncident, IngestIncidentKind


def _confirmations() -> int:
    return int(settings.INGEST_CONFIRMATIONS)


def _foreign_cursors(chain: ChainView) -> list[IngestCursor]:
    """Cursors built from another chain than the node serves (a restarted devnet, a wrong RPC URL)."""
    return [
        cursor
        for cursor in IngestCursor.objects.order_by("address")
        if cursor.chain_id != chain.chain_id
        or (cursor.genesis_hash and cursor.genesis_hash != chain.genesis_hash)
    ]


def deep_reorgs_open() -> list[IngestIncident]:
    """The newest deep-reorg incident of each contract whose cursor still stands where the fork stranded it.

    A ledger reset after it, or the cursor having moved (or gone), means ingest got past it.
    """
    latest = (
        IngestIncident.objects.filter(kind=IngestIncidentKind.DEEP_REORG)
        .order_by("chain_id", "address", "-created_at", "-id")
        .distinct("chain_id", "address")
    )
    stranded = []
    for incident in latest:
        reset = IngestIncident.objects.filter(
            chain_id=incident.chain_id,
            kind=IngestIncidentKind.LEDGER_RESET,
            created_at__gt=incident.created_at,
        ).exists()
        cursor = IngestCursor.objects.filter(chain_id=incident.chain_id, address=incident.address).first()
        if not reset and cursor is not None and cursor.block_number == incident.block_number:
            stranded.append(incident)
    return stranded


def deep_reorg(ctx: RuleContext) -> list[Condition]:
    return [
        Condition(
            kind=AlertKind.DEEP_REORG,
            subject=incident.address,
            severity=AlertSeverity.CRITICAL,
            summary=(
                f"the chain forked below every block kept for {short(incident.address)} (cursor at block "
                f"{incident.block_number}): its ingest is stopped until the cursor is reset"
            ),
            details={
                "chain_id": incident.chain_id,
                "address": incident.address,
                "block_number": incident.block_number,
                "incident_id": incident.id,
                "detail": incident.detail,
                "at": incident.created_at.isoformat(),
            },
        )
        for incident in deep_reorgs_open()
    ]


def deep_reorg_resolution(alert: Alert, ctx: RuleContext) -> str:
    incident_id = int(alert.details.get("incident_id") or 0)
    if IngestIncident.objects.filter(kind=IngestIncidentKind.LEDGER_RESET, id__gt=incident_id).exists():
        return "the ledger was reset: ingest started over from the start block"
    cursor = IngestCursor.objects.filter(address=alert.subject).first()
    if cursor is None:
        return "the contract's cursor was removed"
    return f"ingest moved past the fork: the cursor is at block {cursor.block_number}"


def _behind_summary(views: list[CursorView]) -> dict[str, int]:
    return {view.cursor.address: view.behind for view in views}


def ingest_lag(ctx: RuleContext) -> list[Condition] | None:
    """The ledger more than ALERT_INGEST_LAG_BLOCKS behind the confirmed head (head - INGEST_CONFIRMATIONS)."""
    chain, views = ctx.chain(), ctx.cursors()
    if chain is None or views is None:
        return None  # no node to compare with: keep what is open
    if _foreign_cursors(chain) or not views:
        return []  # another chain, or nothing ingested yet: "stopped" speaks for it
    worst = max(views, key=lambda view: view.behind)
    limit = int(settings.ALERT_INGEST_LAG_BLOCKS)
    if worst.behind <= limit:
        return []
    assert chain.head is not None
    return [
        Condition(
            kind=AlertKind.INGEST_LAG,
            subject="",
            severity=AlertSeverity.WARNING,
            summary=(
                f"ingest is {worst.behind} blocks behind the confirmed head {chain.head - _confirmations()} "
                f"({short(worst.cursor.address)} at block {worst.cursor.block_number}; limit {limit})"
            ),
            details={
                "chain_id": chain.chain_id,
                "head": chain.head,
                "confirmations": _confirmations(),
                "behind": _behind_summary(views),
                "threshold_blocks": limit,
            },
        )
    ]


def ingest_stopped(ctx: RuleContext) -> list[Condition] | None:
    """Ingest not following the chain: stuck behind a confirmed head, node unreachable, another chain, deep reorg."""
    limit = float(settings.ALERT_INGEST_STOPPED_SECONDS)
    reasons: list[str] = []
    details: dict[str, Any] = {"threshold_seconds": limit}
    unknown = False
    chain = ctx.chain()
    if chain is None:
        unknown = True
    elif not chain.reachable:
        silent = (ctx.now - chain.since).total_seconds()
        if silent >= limit:
            reasons.append(f"the chain node has not answered for {silent:.0f} s ({chain.error})")
            details.update(node=chain.url, node_error=chain.error, node_silent_seconds=round(silent))
        else:
            unknown = True
    else:
        foreign = _foreign_cursors(chain)
        if foreign:
            reasons.append(
                f"the node serves another chain (id {chain.chain_id}, genesis {short(chain.genesis_hash)}) than "
                "the ledger was built from; if the old chain is gone for good, run `manage.py ingest --reset`"
            )
            details.update(node_chain_id=chain.chain_id, node_genesis=chain.genesis_hash)
        views = ctx.cursors() or []
        stuck = {}
        for view in views:
            standing = (ctx.now - view.behind_since).total_seconds() if view.behind_since else 0.0
            if standing >= limit:
                stuck[view.cursor.address] = {"block": view.cursor.block_number, "behind": view.behind}
                reasons.append(
                    f"{short(view.cursor.address)} has stood at block {view.cursor.block_number} for "
                    f"{standing:.0f} s, {view.behind} confirmed blocks behind"
                )
        if stuck:
            details.update(head=chain.head, stuck=stuck)
    for incident in deep_reorgs_open():
        reasons.append(f"a deep reorg stranded {short(incident.address)} at block {incident.block_number}")
        details.setdefault("deep_reorgs", []).append(incident.address)
    if not reasons:
        return None if unknown else []
    details["reasons"] = reasons
    return [
        Condition(
            kind=AlertKind.INGEST_STOPPED,
            subject="",
            severity=AlertSeverity.CRITICAL,
            summary="ingest stopped: "
            + reasons[0]
            + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""),
            details=details,
        )
    ]


def ingest_resolution(alert: Alert, ctx: RuleContext) -> str:
    views = ctx.cursors() or []
    if alert.kind == AlertKind.INGEST_LAG:
        worst = max((view.behind for view in views), default=0)
        return f"ingest caught up: {worst} confirmed blocks behind"
    return "ingest follows the chain again"


INGEST_RULES: tuple[Rule, ...] = (
    Rule(AlertKind.INGEST_LAG, ingest_lag, ingest_resolution),
    Rule(AlertKind.INGEST_STOPPED, ingest_stopped, ingest_resolution),
    Rule(AlertKind.DEEP_REORG, deep_reorg, deep_reorg_resolution),
)
