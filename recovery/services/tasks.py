"""Recovery tasks: requested idempotently, claimed with a lease by a conditional UPDATE, retried with backoff.

A task row is the truth; an RQ job only carries its id. Two workers can never hold one row (the claim is a
single conditional UPDATE), a worker that dies loses its lease and the reconciler hands the row to another,
and a Redis flush only delays work because the reconciler re-enqueues every row that is due.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from controlplane.changes import change_announce, recovery_task_changed
from controlplane.jobs import job_enqueue, jobs_waiting
from controlplane.rowqueue import Lease, RowQueue, row_claim, row_lease_kept, row_renew, row_settle, rows_due
from controlplane.rowqueue import backoff_seconds as _backoff
from recovery.models import OPEN_STATUSES, RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask

logger = logging.getLogger("recovery")

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"

# A claim moves the row to "running" and writes its own token to leased_by: a run that outlived its lease can
# never settle, or renew, a claim made since (controlplane.rowqueue).
QUEUE = RowQueue(
    model=RecoveryTask,
    lease_seconds=lambda: float(settings.RECOVERY_LEASE_SECONDS),
    held_status=RecoveryStatus.RUNNING,
    holder_column="leased_by",
    touched_column="updated_at",
)


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
    def cancel(cls, detail: str, **result: object) -> Outcome:
        return cls("cancel", detail, dict(result) if result else None)


def forward_subject(*, batch_identifier: str, first_signature_id: int) -> str:
    """A forward task's subject: its batch, and the first signature it was asked for. One task per batch and
    verifier pass; while one is open, asking with the same first signature is asking for the same task."""
    return f"{batch_identifier}:{first_signature_id}"


def backoff_seconds(attempts: int) -> float:
    """Capped exponential backoff: 1, 2, 4 … up to RECOVERY_BACKOFF_CAP seconds; never gives up by itself."""
    return _backoff(attempts=attempts, cap=float(settings.RECOVERY_BACKOFF_CAP))


def recovery_task_request(
    *,
    kind: RecoveryKind,
    subject: str,
    requested_by: str = "system",
    reason: str = "",
    run: RecoveryRun | None = None,
    urgent: bool = False,
) -> tuple[RecoveryTask, bool]:
    """The open task for (kind, subject), created if there is none; (task, created). Enqueued on commit.

    ``urgent`` (a person asked, or the aggregator changed) makes an open task that is backing off due now, and
    puts its job ahead of those waiting: after an aggregator restart, one replay per batch delivers what the
    forwards queued before it would, one signature a job. The periodic detectors ask again every pass and must
    not, or a failing task would retry every pass.
    """
    # The open task may be settled between the INSERT that finds it and the SELECT that reads it: then there is
    # no open task any more, and the INSERT is tried again. Each round needs a concurrent settle to fail.
    for _ in range(10):
        created = _tasks_insert(
            kind=kind, subjects=[subject], requested_by=requested_by, reason=reason, run=run, urgent=urgent
        )
        if created:
            return created[0], True
        existing = _open_task(kind=kind, subject=subject)
        if existing is None:
            continue
        if urgent and existing.status == RecoveryStatus.PENDING:
            if existing.next_attempt_at > timezone.now():
                RecoveryTask.objects.filter(id=existing.id, status=RecoveryStatus.PENDING).update(
                    next_attempt_at=timezone.now()
                )
            transaction.on_commit(
                partial(
                    recovery_task_enqueue,
                    task_id=existing.id,
                    attempts=existing.attempts,
                    kind=kind,
                    at_front=True,
                )
            )
        return existing, False
    raise RuntimeError(f"could not request a {kind} task for {subject}: it kept being settled concurrently")


def recovery_tasks_request(*, kind: RecoveryKind, subjects: Sequence[str], reason: str = "") -> int:
    """A periodic detector's form of ``recovery_task_request`` for many subjects: each gets a task unless one is
    open (never urgent); one statement whatever their number. Returns how many were created.

    A detector asks every pass for every subject that still needs work, and nearly all of them have an open task
    (backing off, or queued behind others after an aggregator restart): two statements a subject a pass, while the
    machine is busiest, was the recovery loop's largest cost."""
    return len(_tasks_insert(kind=kind, subjects=subjects, requested_by="system", reason=reason))


def _tasks_insert(
    *,
    kind: RecoveryKind,
    subjects: Sequence[str],
    requested_by: str,
    reason: str,
    run: RecoveryRun | None = None,
    urgent: bool = False,
) -> list[RecoveryTask]:
    """Insert a pending task for each subject that has no open one; enqueue and announce the new ones."""
    if not subjects:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, leased_by,
                last_error, requested_by, reason, result, run_id, created_at, updated_at)
            SELECT %s, subject, 'pending', 0, now(), '', '', %s, %s, '{}', %s, now(), now()
            FROM unnest(%s::text[]) WITH ORDINALITY AS s(subject, n) ORDER BY n
            ON CONFLICT (kind, subject) WHERE status IN ('pending', 'running') DO NOTHING
            RETURNING id
            """,
            [kind, requested_by[:150], reason, run.id if run else None, list(dict.fromkeys(subjects))],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    tasks = list(RecoveryTask.objects.filter(id__in=ids).order_by("id"))
    for task in tasks:
        transaction.on_commit(
            partial(recovery_task_enqueue, task_id=task.id, attempts=0, kind=kind, at_front=urgent)
        )
        change_announce(recovery_task_changed, task=task, action="requested")
    return tasks


def _open_task(*, kind: str, subject: str) -> RecoveryTask | None:
    return RecoveryTask.objects.filter(kind=kind, subject=subject, status__in=OPEN_STATUSES).first()


# Jobs that call operators run on a queue (and workers) of their own: an operator that answers slowly, or not
# at all, never delays forwarding to the aggregator or webhooks.
OPERATOR_QUEUE = "operators"


def _job_id(*, task_id: int, attempts: int) -> str:
    return f"recovery-{task_id}-{attempts}"


def recovery_task_enqueue(*, task_id: int, attempts: int, kind: str = "", at_front: bool = False) -> None:
    """Ask a worker to run the task soon (next, with ``at_front``). Best effort: the reconciler covers a lost
    enqueue."""
    job_enqueue(
        "recovery.jobs.run_recovery_task",  # by name: the job module imports this one
        task_id,
        job_id=_job_id(task_id=task_id, attempts=attempts),
        result_ttl=60,
        failure_ttl=3600,
        what=f"recovery task {task_id}",
        queue_name=OPERATOR_QUEUE if kind == RecoveryKind.CATCHUP else "default",
        at_front=at_front,
    )


def recovery_task_claim(*, task_id: int, worker: str = WORKER_NAME) -> RecoveryTask | None:
    """Take the task if it is due (pending) or its holder's lease ran out; None if someone else has it."""
    lease = row_claim(queue=QUEUE, row_id=task_id, token=worker[:128])
    return RecoveryTask.objects.get(id=task_id) if lease is not None else None


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
    updated = row_settle(queue=QUEUE, lease=Lease(row_id=task.id, token=worker[:128]), fields=fields)
    if updated:
        change_announce(recovery_task_changed, task=task, action=outcome.action, detail=outcome.detail)
    if updated and outcome.action != "done":
        logger.info("recovery %s %s: %s (%s)", task.kind, task.subject[:18], outcome.action, outcome.detail)
    return bool(updated)


Executor = Callable[[RecoveryTask], Outcome]


def recovery_task_renew(*, task_id: int, worker: str) -> bool:
    """Extend the lease of a task this worker still holds; False when it is no longer ours."""
    return row_renew(queue=QUEUE, lease=Lease(row_id=task_id, token=worker[:128]))


def recovery_task_run(
    *, task_id: int, executors: dict[str, Executor], worker: str = WORKER_NAME
) -> str | None:
    """Claim, execute, settle. Returns the action taken, or None when the task was not ours to run.

    Each claim holds a token of its own (the worker's name and a random part): a run that outlived its lease
    can never settle, or renew, a claim that another run made since.
    """
    token = f"{worker}/{uuid.uuid4().hex[:12]}"
    task = recovery_task_claim(task_id=task_id, worker=token)
    if task is None:
        return None
    try:
        with row_lease_kept(queue=QUEUE, lease=Lease(row_id=task.id, token=token[:128])):
            outcome = executors[task.kind](task)
    except Exception as exc:  # a bug or an outage: keep the row, try again later, say why
        logger.exception("recovery %s %s failed", task.kind, task.subject)
        outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
    recovery_task_settle(task=task, outcome=outcome, worker=token)
    return outcome.action


def recovery_reconcile(*, limit: int = 500) -> list[int]:
    """Ids of rows that are due or whose lease expired; each is (re-)enqueued unless its job is waiting already
    (asked of Redis in one round trip: after an aggregator restart, dozens of due tasks wait in the queue for
    several passes). Run periodically."""
    rows = rows_due(queue=QUEUE, fields=("id", "attempts", "kind"), limit=limit)
    waiting = jobs_waiting([_job_id(task_id=task_id, attempts=attempts) for task_id, attempts, _ in rows])
    for task_id, attempts, kind in rows:
        if _job_id(task_id=task_id, attempts=attempts) not in waiting:
            recovery_task_enqueue(task_id=task_id, attempts=attempts, kind=kind)
    return [task_id for task_id, _, _ in rows]
