"""Recovery tasks: requested idempotently, claimed with a lease by a conditional UPDATE, retried with backoff.

A task row is the truth; an RQ job only carries its id. Two workers can never hold one row (the claim is a
single conditional UPDATE), a worker that dies loses its lease and the reconciler hands the row to another,
and a Redis flush only delays work because the reconciler re-enqueues every row that is due.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring.live.notify import live_recovery_task
from recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask

logger = logging.getLogger("recovery")

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Outcome:
    """What an executor decided: finish, try again later, or stop because the work no longer matters."""

    action: str  # "done", "retry", "cancel"
    detail: str = ""
    result: dict[str, object] | None = None

    @classmethod
    def done(cls, detail: str = "", **result: object) -> Outcome:
        return cls("done", detail, dict(result))

    @classmethod
    def retry(cls, detail: str, **result: object) -> Outcome:
        return cls("retry", detail, dict(result))

    @classmethod
    def cancel(cls, detail: str) -> Outcome:
        return cls("cancel", detail)


def backoff_seconds(attempts: int) -> float:
    """Capped exponential backoff: 1, 2, 4 … up to RECOVERY_BACKOFF_CAP seconds; never gives up by itself."""
    cap = float(settings.RECOVERY_BACKOFF_CAP)
    return float(min(cap, 2 ** max(0, attempts - 1)))


def recovery_task_request(
    *,
    kind: RecoveryKind,
    subject: str,
    requested_by: str = "system",
    reason: str = "",
    run: RecoveryRun | None = None,
) -> tuple[RecoveryTask, bool]:
    """The open task for (kind, subject), created if there is none; (task, created). Enqueued on commit."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, leased_by,
                last_error, requested_by, reason, result, run_id, created_at, updated_at)
            VALUES (%s, %s, 'pending', 0, now(), '', '', %s, %s, '{}', %s, now(), now())
            ON CONFLICT (kind, subject) WHERE status IN ('pending', 'running') DO NOTHING
            RETURNING id
            """,
            [kind, subject, requested_by[:150], reason, run.id if run else None],
        )
        row = cursor.fetchone()
    if row is None:
        task = RecoveryTask.objects.get(kind=kind, subject=subject, status__in=["pending", "running"])
        if task.status == RecoveryStatus.PENDING and task.next_attempt_at > timezone.now():
            # Someone asks again: do it now rather than at the end of a backoff.
            RecoveryTask.objects.filter(id=task.id, status=RecoveryStatus.PENDING).update(
                next_attempt_at=timezone.now()
            )
        return task, False
    task = RecoveryTask.objects.get(id=row[0])
    transaction.on_commit(lambda: recovery_task_enqueue(task_id=task.id, attempts=0))
    live_recovery_task(task=task, action="requested")
    return task, True


def recovery_task_enqueue(*, task_id: int, attempts: int) -> None:
    """Ask a worker to run the task soon. Best effort: the reconciler covers a lost enqueue."""
    try:
        import django_rq

        from recovery.jobs import run_recovery_task

        queue = django_rq.get_queue("default")
        job_id = f"recovery-{task_id}-{attempts}"
        if queue.fetch_job(job_id) is None:
            queue.enqueue(run_recovery_task, task_id, job_id=job_id, result_ttl=60, failure_ttl=3600)
    except Exception as exc:  # Redis is disposable; the row is the truth
        logger.warning("could not enqueue recovery task %s (%s); the reconciler will", task_id, exc)


def recovery_task_claim(*, task_id: int, worker: str = WORKER_NAME) -> RecoveryTask | None:
    """Take the task if it is due (pending) or its holder's lease ran out; None if someone else has it.

    clock_timestamp(), not now(): now() is the transaction's start, which a long transaction would freeze.
    """
    lease = float(settings.RECOVERY_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE recovery_recoverytask
            SET status = 'running', lease_until = clock_timestamp() + make_interval(secs => %s),
                leased_by = %s, attempts = attempts + 1, updated_at = clock_timestamp()
            WHERE id = %s AND ((status = 'pending' AND next_attempt_at <= clock_timestamp())
                OR (status = 'running' AND lease_until < clock_timestamp()))
            RETURNING id
            """,
            [lease, worker[:128], task_id],
        )
        row = cursor.fetchone()
    return RecoveryTask.objects.get(id=row[0]) if row else None


def recovery_task_settle(*, task: RecoveryTask, outcome: Outcome, worker: str = WORKER_NAME) -> bool:
    """Record the outcome, only if this worker still holds the lease (else another took over: drop it)."""
    now = timezone.now()
    fields: dict[str, object] = {"updated_at": now, "lease_until": None, "leased_by": ""}
    if outcome.result is not None:
        fields["result"] = {**task.result, **outcome.result}
    if outcome.action == "done":
        fields.update(status=RecoveryStatus.DONE, finished_at=now, last_error="")
    elif outcome.action == "cancel":
        fields.update(status=RecoveryStatus.CANCELLED, finished_at=now, last_error=outcome.detail)
    else:
        fields.update(
            status=RecoveryStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=backoff_seconds(task.attempts)),
            last_error=outcome.detail[:2000],
        )
    updated = RecoveryTask.objects.filter(id=task.id, status=RecoveryStatus.RUNNING, leased_by=worker).update(
        **fields
    )
    if updated:
        live_recovery_task(task=task, action=outcome.action, detail=outcome.detail)
    if updated and outcome.action != "done":
        logger.info("recovery %s %s: %s (%s)", task.kind, task.subject[:18], outcome.action, outcome.detail)
    return bool(updated)


Executor = Callable[[RecoveryTask], Outcome]


def recovery_task_run(
    *, task_id: int, executors: dict[str, Executor], worker: str = WORKER_NAME
) -> str | None:
    """Claim, execute, settle. Returns the action taken, or None when the task was not ours to run."""
    task = recovery_task_claim(task_id=task_id, worker=worker)
    if task is None:
        return None
    try:
        outcome = executors[task.kind](task)
    except Exception as exc:  # a bug or an outage: keep the row, try again later, say why
        logger.exception("recovery %s %s failed", task.kind, task.subject)
        outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
    recovery_task_settle(task=task, outcome=outcome, worker=worker)
    return outcome.action


def recovery_reconcile(*, limit: int = 500) -> list[int]:
    """Ids of rows that are due or whose lease expired; each is (re-)enqueued. Run periodically."""
    now = timezone.now()
    due = list(
        RecoveryTask.objects.filter(status=RecoveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("id", "attempts")[:limit]
    )
    expired = list(
        RecoveryTask.objects.filter(status=RecoveryStatus.RUNNING, lease_until__lt=now).values_list(
            "id", "attempts"
        )[:limit]
    )
    for task_id, attempts in [*due, *expired]:
        recovery_task_enqueue(task_id=task_id, attempts=attempts)
    return [task_id for task_id, _ in [*due, *expired]]
