"""Recovery rows: requested once, held by one worker at a time, taken over after a lease expires, never lost."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq.job import JobStatus

from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services import tasks as tasks_module
from recovery.services.tasks import (
    Outcome,
    backoff_seconds,
    recovery_reconcile,
    recovery_task_claim,
    recovery_task_request,
    recovery_task_run,
    recovery_task_settle,
    recovery_tasks_request,
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


@pytest.mark.django_db(transaction=True)
def test_it_enqueues_a_due_task_whatever_old_job_of_that_id_redis_still_holds(clean_queue):
    """A job of the same id that finished (another database sharing this Redis) or was abandoned by a killed
    worker must not stop the enqueue: that left due work waiting for the old job's TTL (up to an hour)."""
    task, _ = recovery_task_request(kind=RecoveryKind.FORWARD, subject="7")
    job = clean_queue.fetch_job(f"recovery-{task.id}-0")
    assert job is not None
    assert clean_queue.count == 1
    # Waiting in the queue: enough, nothing is added.
    recovery_reconcile()
    assert clean_queue.count == 1
    # The job is taken off the queue and left behind as started (its worker was SIGKILLed before claiming).
    clean_queue.remove(job)
    job.set_status(JobStatus.STARTED)
    assert clean_queue.count == 0
    assert recovery_reconcile() == [task.id]
    assert clean_queue.count == 1, "enqueued again although a job of that id exists"
    requeued = clean_queue.fetch_job(f"recovery-{task.id}-0")
    assert requeued is not None
    assert requeued.get_status() == JobStatus.QUEUED
    # The same for a finished one.
    clean_queue.remove(requeued)
    requeued.set_status(JobStatus.FINISHED)
    recovery_reconcile()
    assert clean_queue.count == 1


@pytest.mark.django_db(transaction=True)
def test_an_urgent_request_puts_its_job_ahead_of_those_waiting(clean_queue):
    """After an aggregator restart, each batch's replay runs before the forwards queued before it."""
    forwards = [recovery_task_request(kind=RecoveryKind.FORWARD, subject=str(i))[0] for i in range(3)]
    replay, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xab", urgent=True)
    assert clean_queue.job_ids[0] == f"recovery-{replay.id}-0"
    # Already waiting, behind others: asked for urgently, it moves to the front (once: no second job).
    recovery_task_request(kind=RecoveryKind.FORWARD, subject="1", urgent=True)
    assert clean_queue.job_ids == [f"recovery-{forwards[1].id}-0", f"recovery-{replay.id}-0"] + [
        f"recovery-{forwards[i].id}-0" for i in (0, 2)
    ]


@pytest.mark.django_db
def test_it_creates_a_new_task_when_the_open_one_is_settled_between_insert_and_read(monkeypatch):
    """The INSERT … ON CONFLICT DO NOTHING finds an open task, which a worker settles before it is read."""
    first, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xee")
    original = tasks_module._open_task
    calls = []

    def settled_meanwhile(*, kind: str, subject: str) -> RecoveryTask | None:
        calls.append(subject)
        if len(calls) == 1:  # a concurrent settle lands exactly here
            RecoveryTask.objects.filter(id=first.id).update(status=RecoveryStatus.DONE)
        return original(kind=kind, subject=subject)

    monkeypatch.setattr(tasks_module, "_open_task", settled_meanwhile)
    second, created = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xee")
    assert created
    assert second.id != first.id
    assert second.status == RecoveryStatus.PENDING
    assert calls == ["0xee"]


@pytest.mark.django_db
def test_it_keeps_a_failing_tasks_backoff_when_a_detector_asks_again_but_not_when_a_person_does():
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xff")
    RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    recovery_task_run(task_id=task.id, executors={"replay": lambda t: Outcome.retry("aggregator down")})
    backing_off = RecoveryTask.objects.get(id=task.id).next_attempt_at
    assert backing_off > timezone.now()
    # The periodic detectors ask every pass: the backoff holds.
    for _ in range(3):
        _, created = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xff", reason="stuck")
        assert not created
    assert RecoveryTask.objects.get(id=task.id).next_attempt_at == backing_off
    assert task.id not in recovery_reconcile()
    # Staff (or a new aggregator) asking makes it due now.
    recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xff", requested_by="alice", urgent=True)
    assert RecoveryTask.objects.get(id=task.id).next_attempt_at <= timezone.now()


@pytest.mark.django_db(transaction=True)
def test_it_renews_the_lease_while_a_task_runs_longer_than_it(settings):
    settings.RECOVERY_LEASE_SECONDS = 1.0
    task, _ = recovery_task_request(kind=RecoveryKind.CATCHUP, subject="0x01")
    stolen: list[object] = []

    def slow(_task: RecoveryTask) -> Outcome:
        # Three leases long; another worker keeps trying to take the row over meanwhile.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            stolen.append(recovery_task_claim(task_id=task.id, worker="thief"))
            assert task.id not in recovery_reconcile()
            time.sleep(0.2)
        return Outcome.done("slow but alive")

    try:
        assert recovery_task_run(task_id=task.id, executors={"catchup": slow}) == "done"
    finally:
        connection.close()
    assert len(stolen) > 5
    assert stolen == [None] * len(stolen), "the lease never lapsed under live work"
    row = RecoveryTask.objects.get(id=task.id)
    assert row.status == RecoveryStatus.DONE
    assert row.attempts == 1


@pytest.mark.django_db
def test_it_fences_each_claim_with_a_token_of_its_own():
    task, _ = recovery_task_request(kind=RecoveryKind.FORWARD, subject="9")
    tokens: list[str] = []

    def remember(row: RecoveryTask) -> Outcome:
        tokens.append(RecoveryTask.objects.get(id=row.id).leased_by)
        return Outcome.retry("again")

    for _ in range(2):
        RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        recovery_task_run(task_id=task.id, executors={"forward": remember}, worker="same-worker")
    assert len(set(tokens)) == 2
    assert all(token.startswith("same-worker/") for token in tokens)


@pytest.mark.django_db(transaction=True)
def test_it_requests_tasks_for_many_subjects_in_one_insert(clean_queue):
    """A periodic detector asks every pass for every subject still owed work; nearly all have an open task."""
    open_task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xa1")
    with CaptureQueriesContext(connection) as queries:
        created = recovery_tasks_request(kind=RecoveryKind.REPLAY, subjects=["0xa1", "0xa2", "0xa3", "0xa2"])
    assert created == 2
    assert len(queries) == 2  # the insert, and a read of what it created
    rows = list(RecoveryTask.objects.order_by("id").values_list("subject", "status"))
    assert rows == [("0xa1", "pending"), ("0xa2", "pending"), ("0xa3", "pending")]
    assert clean_queue.count == 3, "the new ones are enqueued on commit"
    with CaptureQueriesContext(connection) as queries:
        assert recovery_tasks_request(kind=RecoveryKind.REPLAY, subjects=["0xa1", "0xa2", "0xa3"]) == 0
    assert len(queries) == 1
    assert RecoveryTask.objects.get(subject="0xa1").id == open_task.id


@pytest.mark.django_db(transaction=True)
def test_it_reconciles_without_enqueuing_again_the_jobs_still_waiting(clean_queue, monkeypatch):
    tasks = [recovery_task_request(kind=RecoveryKind.FORWARD, subject=str(i))[0] for i in range(5)]
    assert clean_queue.count == 5
    enqueued: list[int] = []
    original = tasks_module.recovery_task_enqueue

    def spy(*, task_id: int, **kwargs: object) -> None:
        enqueued.append(task_id)
        original(task_id=task_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks_module, "recovery_task_enqueue", spy)
    assert recovery_reconcile() == [t.id for t in tasks]
    assert enqueued == [], "every due task's job is waiting already"
    lost = clean_queue.fetch_job(f"recovery-{tasks[3].id}-0")
    assert lost is not None
    lost.delete()  # gone from Redis (evicted, flushed): the row is still due
    assert recovery_reconcile() == [t.id for t in tasks]
    assert enqueued == [tasks[3].id]
    assert clean_queue.count == 5


@pytest.mark.django_db(transaction=True)
def test_it_enqueues_over_the_same_redis_connection_each_time(clean_queue):
    recovery_task_request(kind=RecoveryKind.FORWARD, subject="warm-up")  # the process's first connection
    before = clean_queue.connection.info("stats")["total_connections_received"]
    for i in range(20):
        recovery_task_request(kind=RecoveryKind.FORWARD, subject=f"c{i}")
    recovery_reconcile()
    after = clean_queue.connection.info("stats")["total_connections_received"]
    assert clean_queue.count == 21
    assert after - before <= 1  # a connect per enqueue was most of an enqueue's cost
