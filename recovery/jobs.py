"""Thin RQ jobs: a task id in, the row claimed, the work done by the services."""

from __future__ import annotations

from recovery.models import RecoveryKind
from recovery.services.catchup import catchup_execute
from recovery.services.forwarding import forward_execute, replay_execute
from recovery.services.respond import respond_execute
from recovery.services.tasks import Executor, recovery_task_run

EXECUTORS: dict[str, Executor] = {
    RecoveryKind.FORWARD: forward_execute,
    RecoveryKind.REPLAY: replay_execute,
    RecoveryKind.CATCHUP: catchup_execute,
    RecoveryKind.RESPOND: respond_execute,
}


def run_recovery_task(task_id: int) -> str | None:
    return recovery_task_run(task_id=task_id, executors=EXECUTORS)
