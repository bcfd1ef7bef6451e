"""Recovery rows: requested once, held by one worker at a time, taken over after a lease expires, never lost."""

from __future__ import annotations

import threading
from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.utils import timezone

from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services.tasks import (
    Outcome,
    backoff_seconds,
    recovery_reconcile,
    recovery_task_claim,
    recovery_task_request,
    recovery_task_run,
    recovery_task_settle,
)


@pytest.fixture(autouse=True)
def clean_queue():
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


@pytest.mark.django_db
def test_it_keeps_one_open_task_per_subject():
    first, created = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xaa", reason="one")
    second, created_again = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xaa", reason="two")
    assert created
    assert not created_again
    assert first.id == second.id
    assert RecoveryTask.objects.count() == 1
    # Once finished, the same subject can be requested again.
    RecoveryTask.objects.filter(id=first.id).update(status=RecoveryStatus.DONE)
    third, created_third = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xaa")
    assert created_third
    assert third.id != first.id


@pytest.mark.django_db(transaction=True)
def test_it_never_lets_two_workers_hold_the_same_row():
    task, _ = recovery_task_request(kind=RecoveryKind.FORWARD, subject="1")
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        try:
            if recovery_task_claim(task_id=task.id, worker=name) is not None:
                winners.append(name)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"worker-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    task.refresh_from_db()
    assert task.status == RecoveryStatus.RUNNING
    assert task.leased_by == winners[0]
    assert task.attempts == 1


@pytest.mark.django_db
def test_it_hands_a_row_to_another_worker_when_the_lease_expires():
    task, _ = recovery_task_request(kind=RecoveryKind.FORWARD, subject="2")
    held = recovery_task_claim(task_id=task.id, worker="dead")
    assert held is not None
    assert recovery_task_claim(task_id=task.id, worker="other") is None
    RecoveryTask.objects.filter(id=task.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert task.id in recovery_reconcile(), "the reconciler finds the expired lease"
    taken = recovery_task_claim(task_id=task.id, worker="other")
    assert taken is not None
    assert taken.attempts == 2
    # The dead worker's late answer is dropped: it no longer holds the row.
    assert not recovery_task_settle(task=held, outcome=Outcome.done(), worker="dead")
    assert recovery_task_settle(task=taken, outcome=Outcome.done("ok"), worker="other")
    assert RecoveryTask.objects.get(id=task.id).status == RecoveryStatus.DONE


@pytest.mark.django_db
def test_it_retries_with_capped_backoff_and_never_gives_up_by_itself(settings):
    settings.RECOVERY_BACKOFF_CAP = 8
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xbb")
    delays = []
    for _ in range(6):
        RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        action = recovery_task_run(
            task_id=task.id, executors={"replay": lambda t: Outcome.retry("aggregator down")}
        )
        assert action == "retry"
        row = RecoveryTask.objects.get(id=task.id)
        assert row.status == RecoveryStatus.PENDING
        assert row.last_error == "aggregator down"
        delays.append(round((row.next_attempt_at - row.updated_at).total_seconds()))
    assert delays == [1, 2, 4, 8, 8, 8]
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    # Not due: the reconciler leaves it alone.
    assert task.id not in recovery_reconcile()


@pytest.mark.django_db
def test_it_retries_an_executor_that_raises():
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xcc")

    def broken(_task: RecoveryTask) -> Outcome:
        raise ConnectionError("boom")

    assert recovery_task_run(task_id=task.id, executors={"replay": broken}) == "retry"
    row = RecoveryTask.objects.get(id=task.id)
    assert row.status == RecoveryStatus.PENDING
    assert "ConnectionError: boom" in row.last_error


@pytest.mark.django_db(transaction=True)
def test_it_survives_a_redis_flush_because_the_reconciler_re_enqueues(clean_queue):
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xdd")
    assert clean_queue.fetch_job(f"recovery-{task.id}-0") is not None, "enqueued on commit"
    clean_queue.connection.flushdb()
    assert clean_queue.count == 0
    assert recovery_reconcile() == [task.id]
    assert clean_queue.fetch_job(f"recovery-{task.id}-0") is not None
    assert clean_queue.count == 1
