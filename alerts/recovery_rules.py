"""Recovery-side rules: the aggregator (unreachable, restarted) and recovery tasks that keep failing.

They read the recovery app's rows (AggregatorBoot, RecoveryTask) and the aggregator's health as observed once
per evaluation (its unreachable-since kept in Postgres).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from alerts.conditions import SUBJECT_LIMIT, Condition, Rule, short
from alerts.models import Alert, AlertKind, AlertSeverity
from alerts.observe import RuleContext
from controlplane.inputs import ascii_int
from recovery.models import OPEN_STATUSES, AggregatorBoot, RecoveryKind, RecoveryStatus, RecoveryTask

# A restart with nothing (left) to replay is still told once, if it is this recent.
RESTART_NOTICE = timedelta(hours=1)


# --- Aggregator ---------------------------------------------------------------------------------


def aggregator_unreachable(ctx: RuleContext) -> list[Condition]:
    view = ctx.aggregator()
    limit = float(settings.ALERT_AGGREGATOR_UNREACHABLE_SECONDS)
    failing = (ctx.now - view.since).total_seconds()
    if view.reachable or failing < limit:
        return []
    return [
        Condition(
            kind=AlertKind.AGGREGATOR_UNREACHABLE,
            subject="",
            severity=AlertSeverity.CRITICAL,
            summary=(
                f"the aggregator has not answered its health check for {failing:.0f} s ({view.error}); "
                "verified signatures are kept and forwarded when it is back"
            ),
            details={"since": view.since.isoformat(), "seconds": round(failing), "error": view.error},
        )
    ]


def _restart_replays_open() -> int:
    """Open replays: whoever requested them (the watch on the new boot, a stuck batch, staff), each one runs
    against the current aggregator, so the restart is not over while any is open."""
    return RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY, status__in=OPEN_STATUSES).count()


def aggregator_restarted(ctx: RuleContext) -> list[Condition]:
    """The newest aggregator boot, when it replaced an earlier one, until its replays are done.

    A restart with nothing (left) to replay is still told once when recent: the alert opens, and resolves on
    the next evaluation.
    """
    boots = list(AggregatorBoot.objects.order_by("-first_seen_at", "-id")[:2])
    if len(boots) < 2:
        return []
    boot, previous = boots
    replays = _restart_replays_open()
    if not replays:
        told = Alert.objects.filter(kind=AlertKind.AGGREGATOR_RESTARTED, subject=boot.boot_id).exists()
        if told or ctx.now - boot.first_seen_at > RESTART_NOTICE:
            return []
    return [
        Condition(
            kind=AlertKind.AGGREGATOR_RESTARTED,
            subject=boot.boot_id,
            severity=AlertSeverity.WARNING if replays else AlertSeverity.INFO,
            summary=(
                f"the aggregator restarted (boot {boot.boot_id[:8]} replaced {previous.boot_id[:8]}): its "
                f"in-memory signatures are gone; replaying {replays} pending batches to it"
            ),
            details={
                "boot_id": boot.boot_id,
                "previous_boot_id": previous.boot_id,
                "url": boot.url,
                "first_seen_at": boot.first_seen_at.isoformat(),
                "replays_open": replays,
            },
        )
    ]


def aggregator_resolution(alert: Alert, ctx: RuleContext) -> str:
    if alert.kind == AlertKind.AGGREGATOR_UNREACHABLE:
        return "the aggregator answers its health check again"
    newest = AggregatorBoot.objects.order_by("-first_seen_at", "-id").first()
    if newest is not None and newest.boot_id != alert.subject:
        return f"a newer aggregator boot ({newest.boot_id[:8]}) replaced it"
    return "every replay to the new aggregator is done"


# --- Recovery -----------------------------------------------------------------------------------


def recovery_failing(ctx: RuleContext) -> list[Condition]:
    """Open recovery tasks attempted ALERT_RECOVERY_FAILING_ATTEMPTS times or more."""
    attempts = int(settings.ALERT_RECOVERY_FAILING_ATTEMPTS)
    tasks = RecoveryTask.objects.filter(status__in=OPEN_STATUSES, attempts__gte=attempts).order_by("id")[
        :SUBJECT_LIMIT
    ]
    return [
        Condition(
            kind=AlertKind.RECOVERY_FAILING,
            subject=str(task.id),
            severity=AlertSeverity.WARNING,
            summary=(
                f"recovery task {task.id} ({task.get_kind_display().lower()} {short(task.subject)}) still "
                f"failing after {task.attempts} attempts: {task.last_error[:200] or 'no error recorded'}"
            ),
            details={
                "task_id": task.id,
                "task_kind": task.kind,
                "task_subject": task.subject,
                "attempts": task.attempts,
                "last_error": task.last_error[:2000],
                "requested_by": task.requested_by,
                "created_at": task.created_at.isoformat(),
            },
        )
        for task in tasks
    ]


def recovery_resolution(alert: Alert, ctx: RuleContext) -> str:
    task_id = ascii_int(alert.subject)
    task = RecoveryTask.objects.filter(id=task_id).first() if task_id is not None else None
    if task is None:
        return "the recovery task is gone"
    if task.status == RecoveryStatus.DONE:
        return f"the task is done after {task.attempts} attempts"
    if task.status == RecoveryStatus.CANCELLED:
        return f"the task was cancelled: {task.last_error[:200]}"
    return f"the task is no longer failing (threshold {settings.ALERT_RECOVERY_FAILING_ATTEMPTS} attempts)"


RECOVERY_RULES: tuple[Rule, ...] = (
    Rule(AlertKind.AGGREGATOR_UNREACHABLE, aggregator_unreachable, aggregator_resolution),
    Rule(AlertKind.AGGREGATOR_RESTARTED, aggregator_restarted, aggregator_resolution),
    Rule(AlertKind.RECOVERY_FAILING, recovery_failing, recovery_resolution),
)
