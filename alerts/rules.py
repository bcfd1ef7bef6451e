"""Alert rules, one per AlertKind: each returns the conditions true now; the evaluator turns changes into alerts.

Rules only read (the ledger and the observations in RuleContext); thresholds are settings read at each
evaluation. The rules of ingest (which ask the chain node) and of recovery (the aggregator, recovery tasks) are
in ``ingest_rules``, ``recovery_rules`` and ``standby_rules``; RULES lists them all, in the order they are evaluated.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Min, Q

from alerts.conditions import SUBJECT_LIMIT, Condition, Rule, percent, short
from alerts.ingest_rules import INGEST_RULES
from alerts.models import Alert, AlertKind, AlertSeverity
from alerts.observe import RuleContext
from alerts.recovery_rules import RECOVERY_RULES
from alerts.standby_rules import STANDBY_RULES
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, IngestCursor, Operator
from liveness.models import OperatorLiveness, OperatorState
from progress.models import BatchProgress
from progress.quorum import quorum_threshold, stake_holds_quorum

# --- Batches ------------------------------------------------------------------------------------


def batch_at_risk(ctx: RuleContext) -> list[Condition]:
    """Pending batches whose signed stake plus the live unsigned stake cannot reach the threshold."""
    down = set(
        OperatorLiveness.objects.filter(state=OperatorState.DOWN).values_list("operator_id", flat=True)
    )
    rows = (
        BatchProgress.objects.filter(at_risk=True, batch__status=BatchStatus.PENDING)
        .select_related("batch")
        .order_by("batch__created_block", "batch_id")[:SUBJECT_LIMIT]
    )
    found = []
    for progress in rows:
        total = Decimal(progress.total_stake)
        signed, live = Decimal(progress.signed_stake), Decimal(progress.live_unsigned_stake)
        missing_down = sorted(set(progress.unsigned_operator_ids) & down)
        found.append(
            Condition(
                kind=AlertKind.BATCH_AT_RISK,
                subject=progress.batch.identifier,
                severity=AlertSeverity.CRITICAL,
                summary=(
                    f"batch {short(progress.batch.identifier)} cannot reach quorum: signed "
                    f"{percent(signed, total)}% + live unsigned {percent(live, total)}% < "
                    f"{progress.threshold_percentage}% of stake; {len(missing_down)} unsigned operators down"
                ),
                details={
                    "batch_identifier": progress.batch.identifier,
                    "created_block": progress.batch.created_block,
                    "task_created_block": progress.batch.task_created_block,
                    "signed_stake": str(signed),
                    "live_unsigned_stake": str(live),
                    "total_stake": str(total),
                    "signed_percent": percent(signed, total),
                    "reachable_percent": percent(signed + live, total),
                    "threshold_percent": progress.threshold_percentage,
                    "unsigned_down_operator_ids": missing_down,
                },
            )
        )
    return found


def batch_stalled(ctx: RuleContext) -> list[Condition]:
    """Pending batches created more than ALERT_BATCH_STALLED_BLOCKS before the ingested head.

    The ingested head (not the node's) is the reference: a BatchVerified the ingester has not reached yet must
    not make a batch look stalled. If ingest stops, the ingest rules say so.
    """
    head = IngestCursor.objects.aggregate(head=Min("block_number"))["head"]
    if head is None:
        return []
    blocks = int(settings.ALERT_BATCH_STALLED_BLOCKS)
    rows = (
        Batch.objects.filter(status=BatchStatus.PENDING, created_block__lt=head - blocks)
        .select_related("progress")
        .order_by("created_block", "id")[:SUBJECT_LIMIT]
    )
    found = []
    for batch in rows:
        progress = getattr(batch, "progress", None)
        signed = percent(Decimal(progress.signed_stake), Decimal(progress.total_stake)) if progress else 0.0
        found.append(
            Condition(
                kind=AlertKind.BATCH_STALLED,
                subject=batch.identifier,
                severity=AlertSeverity.WARNING,
                summary=(
                    f"batch {short(batch.identifier)} still pending {head - batch.created_block} blocks after "
                    f"its creation at block {batch.created_block} ({signed}% of stake signed)"
                ),
                details={
                    "batch_identifier": batch.identifier,
                    "created_block": batch.created_block,
                    "ingested_head": head,
                    "blocks_pending": head - batch.created_block,
                    "threshold_blocks": blocks,
                    "signed_percent": signed,
                },
            )
        )
    return found


def batch_resolution(alert: Alert, ctx: RuleContext) -> str:
    batch = Batch.objects.filter(identifier=alert.subject).first()
    if batch is None:
        return "the batch is no longer in the ledger"
    if batch.status == BatchStatus.VERIFIED:
        return f"batch verified on chain at block {batch.verified_block}"
    if batch.status == BatchStatus.ORPHANED:
        return "the batch's NewBatch was orphaned by a reorg"
    if alert.kind == AlertKind.BATCH_AT_RISK:
        return "enough live stake can sign it again"
    return "no longer pending past the stall threshold"


# --- Operators and quorum -----------------------------------------------------------------------


def _in_startup_grace(liveness: OperatorLiveness, now: datetime) -> bool:
    """Never seen alive (no probe answered, no signature) and down for less than ALERT_STARTUP_GRACE_SECONDS:
    an operator still starting up (or a control plane that just started) is not yet an operator that is down."""
    grace = float(settings.ALERT_STARTUP_GRACE_SECONDS)
    return liveness.last_seen_at is None and (now - liveness.since).total_seconds() < grace


def _staked_operators() -> list[Operator]:
    return list(Operator.objects.filter(registered=True, current_stake__gt=0).order_by("operator_id"))


def operator_down(ctx: RuleContext) -> list[Condition]:
    """Registered operators with stake that liveness declared down; critical when one alone blocks quorum."""
    operators = _staked_operators()
    total = sum((Decimal(o.current_stake) for o in operators), Decimal(0))
    down = {
        row.operator_id: row
        for row in OperatorLiveness.objects.filter(
            state=OperatorState.DOWN, operator_id__in=[o.operator_id for o in operators]
        )
        if not _in_startup_grace(row, ctx.now)
    }
    blocking = 100 - quorum_threshold()
    found = []
    for operator in operators:
        liveness = down.get(operator.operator_id)
        if liveness is None:
            continue
        stake = Decimal(operator.current_stake)
        share = percent(stake, total)
        found.append(
            Condition(
                kind=AlertKind.OPERATOR_DOWN,
                subject=operator.operator_id,
                severity=AlertSeverity.CRITICAL if stake * 100 > total * blocking else AlertSeverity.WARNING,
                summary=(
                    f"operator {short(operator.operator_id)} is down ({share}% of stake) since "
                    f"{liveness.since:%Y-%m-%d %H:%M:%S} UTC: {liveness.last_error or 'no answer'}"
                ),
                details={
                    "operator_id": operator.operator_id,
                    "address": operator.address,
                    "stake": str(stake),
                    "stake_share_percent": share,
                    "total_stake": str(total),
                    "down_since": liveness.since.isoformat(),
                    "last_error": liveness.last_error,
                    "consecutive_failures": liveness.consecutive_failures,
                    "socket": operator.socket,
                },
            )
        )
    return found


def operator_resolution(alert: Alert, ctx: RuleContext) -> str:
    operator = Operator.objects.filter(operator_id=alert.subject).first()
    if operator is None or not operator.registered:
        return "the operator is no longer registered"
    if not operator.current_stake:
        return "the operator no longer has stake"
    liveness = OperatorLiveness.objects.filter(operator_id=alert.subject).first()
    state = liveness.state if liveness else OperatorState.UNKNOWN
    return f"the operator is {state} again"


def _online_stake(now: datetime) -> tuple[Decimal, Decimal, list[str]]:
    """(online stake, total stake, down operator ids) of the registered operators.

    An operator never probed yet counts as online, as in quorum progress: no alarm before the first probe; nor
    one never seen alive within its start-up grace.
    """
    operators = _staked_operators()
    down = {
        row.operator_id
        for row in OperatorLiveness.objects.filter(
            state=OperatorState.DOWN, operator_id__in=[o.operator_id for o in operators]
        )
        if not _in_startup_grace(row, now)
    }
    total = sum((Decimal(o.current_stake) for o in operators), Decimal(0))
    offline = [o for o in operators if o.operator_id in down]
    online = total - sum((Decimal(o.current_stake) for o in offline), Decimal(0))
    return online, total, [o.operator_id for o in offline]


def quorum_impossible(ctx: RuleContext) -> list[Condition]:
    online, total, down = _online_stake(ctx.now)
    threshold = quorum_threshold()
    if not total or stake_holds_quorum(signed=online, total=total, threshold=threshold):
        return []
    return [
        Condition(
            kind=AlertKind.QUORUM_IMPOSSIBLE,
            subject="",
            severity=AlertSeverity.CRITICAL,
            summary=(
                f"only {percent(online, total)}% of stake is online (quorum needs {threshold}%): no batch can "
                f"be verified until operators come back ({len(down)} down)"
            ),
            details={
                "online_stake": str(online),
                "total_stake": str(total),
                "online_percent": percent(online, total),
                "threshold_percent": threshold,
                "down_operator_ids": down,
            },
        )
    ]


def quorum_resolution(alert: Alert, ctx: RuleContext) -> str:
    online, total, _ = _online_stake(ctx.now)
    return f"{percent(online, total)}% of stake is online again (quorum needs {quorum_threshold()}%)"


# --- Signatures ---------------------------------------------------------------------------------


def _window() -> float:
    return float(settings.ALERT_SIGNATURE_WINDOW_SECONDS)


def invalid_signatures(ctx: RuleContext) -> list[Condition]:
    """Sources (client addresses) that posted a signature judged invalid within the window.

    By source, not by the operator a post names: anyone can post in an operator's name, so an invalid post says
    something about who sent it, nothing about the operator (a misconfigured operator shows as its own address).
    """
    cutoff = ctx.now - timedelta(seconds=_window())
    invalid = Signature.objects.filter(status=SignatureStatus.INVALID).filter(
        Q(verified_at__gte=cutoff) | Q(verified_at__isnull=True, received_at__gte=cutoff)
    )
    rows = (
        invalid.values("source")
        .annotate(
            n=Count("id"),
            batches=Count("batch_identifier", distinct=True),
            operators=Count("operator_id", distinct=True),
            last=Max("received_at"),
        )
        .order_by("source")[:SUBJECT_LIMIT]
    )
    found = []
    for row in rows:
        source = row["source"] or "unknown"
        named = list(
            invalid.filter(source=row["source"]).values_list("operator_id", flat=True).distinct()[:10]
        )
        last = invalid.filter(source=row["source"], received_at=row["last"]).first()
        found.append(
            Condition(
                kind=AlertKind.INVALID_SIGNATURE,
                subject=source[:66],
                severity=AlertSeverity.WARNING,
                summary=(
                    f"{row['n']} invalid signatures from {source} naming {row['operators']} operator(s) on "
                    f"{row['batches']} batches in the last {_window() / 60:g} min"
                    + (f": {last.status_reason}" if last and last.status_reason else "")
                ),
                details={
                    "source": source,
                    "count": row["n"],
                    "batches": row["batches"],
                    "operators_named": row["operators"],
                    "operator_ids": sorted(named),
                    "window_seconds": _window(),
                    "last_batch_identifier": last.batch_identifier if last else "",
                    "last_reason": last.status_reason if last else "",
                },
            )
        )
    return found


def conflicting_signatures(ctx: RuleContext) -> list[Condition]:
    """Operators with two different *verified* signatures for one batch within the window (two keys behind one
    operatorId: forgeries never verify, so they never flag one)."""
    cutoff = ctx.now - timedelta(seconds=_window())
    rows = (
        Signature.objects.filter(conflicting=True, received_at__gte=cutoff)
        .values("operator_id")
        .annotate(n=Count("id"), batches=Count("batch_identifier", distinct=True), last=Max("received_at"))
        .order_by("operator_id")[:SUBJECT_LIMIT]
    )
    found = []
    for row in rows:
        last = (
            Signature.objects.filter(
                operator_id=row["operator_id"], conflicting=True, received_at__gte=cutoff
            )
            .order_by("-received_at", "-id")
            .values_list("batch_identifier", flat=True)
            .first()
        )
        found.append(
            Condition(
                kind=AlertKind.CONFLICTING_SIGNATURE,
                subject=row["operator_id"],
                severity=AlertSeverity.WARNING,
                summary=(
                    f"conflicting signatures for operator {short(row['operator_id'])} on {row['batches']} "
                    f"batches in the last {_window() / 60:g} min ({row['n']} submissions kept as evidence)"
                ),
                details={
                    "operator_id": row["operator_id"],
                    "submissions": row["n"],
                    "batches": row["batches"],
                    "window_seconds": _window(),
                    "last_batch_identifier": last or "",
                },
            )
        )
    return found


def signatures_resolution(alert: Alert, ctx: RuleContext) -> str:
    if alert.kind == AlertKind.INVALID_SIGNATURE:
        return f"no invalid signature from {alert.subject} in the last {_window() / 60:g} min"
    return f"no conflicting signature for the operator in the last {_window() / 60:g} min"


RULES: tuple[Rule, ...] = (
    Rule(AlertKind.BATCH_AT_RISK, batch_at_risk, batch_resolution),
    Rule(AlertKind.BATCH_STALLED, batch_stalled, batch_resolution),
    Rule(AlertKind.OPERATOR_DOWN, operator_down, operator_resolution),
    Rule(AlertKind.QUORUM_IMPOSSIBLE, quorum_impossible, quorum_resolution),
    *INGEST_RULES,
    Rule(AlertKind.INVALID_SIGNATURE, invalid_signatures, signatures_resolution),
    Rule(AlertKind.CONFLICTING_SIGNATURE, conflicting_signatures, signatures_resolution),
    *RECOVERY_RULES,
    *STANDBY_RULES,
)
RULES_BY_KIND: dict[str, Rule] = {str(rule.kind): rule for rule in RULES}
