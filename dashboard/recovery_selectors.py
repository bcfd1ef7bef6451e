"""Reads for the recovery page: staff-requested runs with their tasks, and the work in flight."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from controlplane.rowcounts import rowcounts
from recovery.models import OPEN_STATUSES, RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask

OPEN_TASKS_SHOWN = 50


def recovery_runs(*, kind: str | None = None) -> QuerySet[RecoveryRun]:
    """Runs newest first; paging them costs two queries (runs, then all their tasks at once)."""
    runs = RecoveryRun.objects.prefetch_related(
        Prefetch("recoverytask_set", queryset=RecoveryTask.objects.order_by("id"))
    ).order_by("-created_at", "-id")
    return runs.filter(kind=kind) if kind else runs


def recovery_task_counts() -> dict[str, dict[str, int]]:
    """Tasks by kind and status: {"replay": {"pending": 2, "running": 0, "done": 5, "cancelled": 0}, …}."""
    counts = {kind.value: dict.fromkeys(RecoveryStatus.values, 0) for kind in RecoveryKind}
    # Counted by the writes: finished tasks are most of the table, and it grows with history.
    for key, n in rowcounts(prefix="recovery_tasks").items():
        kind, _, status = key.partition(":")
        counts.setdefault(kind, dict.fromkeys(RecoveryStatus.values, 0))[status] = n
    return counts


def recovery_open_tasks(*, limit: int = OPEN_TASKS_SHOWN) -> list[RecoveryTask]:
    """Work in flight, oldest first: what the workers hold (running) and what is due or backing off (pending)."""
    return list(RecoveryTask.objects.filter(status__in=OPEN_STATUSES).order_by("created_at", "id")[:limit])
