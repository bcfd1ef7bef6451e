"""RQ jobs that carry a row id: enqueued unless one is already waiting, never trusted as the truth.

The rows in Postgres are the queue; an RQ job only gets a worker to a row sooner. So an enqueue skips only a job
of the same id that is still waiting to run. Any other job of that id in Redis (finished, failed, abandoned by a
SIGKILLed worker, or left by another database sharing this Redis) must not stop it: the row says the work is
due, so it is. Redis being away is said once per outage, and the periodic reconcilers enqueue again later.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from rq.job import Job, JobStatus

from controlplane.outages import redis_outage

_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})

# django_rq.get_queue builds a new Redis client, so a new connection, on every call: that connect was most of the
# cost of an enqueue (a verifier pass enqueues a job per batch, a reconcile pass one per due row). One queue per
# name and configuration, kept for the process; redis-py's pool is thread-safe and reconnects after a fork.
_QUEUES: dict[tuple[str, str], Any] = {}
_QUEUES_LOCK = threading.Lock()


def _queue(name: str) -> Any:
    import django_rq
    from django.conf import settings

    key = (name, repr(settings.RQ_QUEUES.get(name)))
    with _QUEUES_LOCK:
        queue = _QUEUES.get(key)
        if queue is None:
            queue = _QUEUES[key] = django_rq.get_queue(name)
    return queue


def job_enqueue(
    function: str,
    *args: Any,
    job_id: str,
    result_ttl: int,
    failure_ttl: int,
    what: str,
    queue_name: str = "default",
    at_front: bool = False,
) -> bool:
    """Enqueue ``function(*args)`` on ``queue_name`` as ``job_id`` (ahead of every waiting job with ``at_front``);
    False when Redis could not take it.

    ``function`` is the job's dotted name: the service that enqueues never imports the job module that calls it.
    """
    try:
        queue = _queue(queue_name)
        # Only the status: fetching the job would read and unpickle all of it (most of a reconcile pass's time).
        status = _status(queue.connection.hget(Job.key_for(job_id), "status"))
        if at_front and status == JobStatus.QUEUED:
            # Waiting behind others: moved to the front. Should a worker pop it in between, it runs twice, and the
            # second run finds its row claimed or settled (the row is the truth).
            queue.remove(job_id)
            queue.push_job_id(job_id, at_front=True)
        elif status not in _WAITING:
            queue.enqueue(
                function,
                *args,
                job_id=job_id,
                result_ttl=result_ttl,
                failure_ttl=failure_ttl,
                at_front=at_front,
            )
    except Exception as exc:  # Redis is disposable; the row is the truth
        redis_outage.note(f"could not enqueue {what} ({exc}); the reconciler will")
        return False
    redis_outage.over()
    return True


def jobs_waiting(job_ids: Sequence[str], *, queue_name: str = "default") -> set[str]:
    """Those of ``job_ids`` whose job is waiting to run, in one round trip: what ``job_enqueue`` would skip, for a
    reconciler to leave alone without fetching each job. Empty when Redis is away (then each enqueue says so)."""
    if not job_ids:
        return set()
    try:
        pipeline = _queue(queue_name).connection.pipeline(transaction=False)
        for job_id in job_ids:
            pipeline.hget(Job.key_for(job_id), "status")
        statuses = pipeline.execute()
    except Exception as exc:  # Redis is disposable; the row is the truth
        redis_outage.note(f"could not read job statuses ({exc}); the reconciler will enqueue")
        return set()
    return {job_id for job_id, status in zip(job_ids, statuses, strict=True) if _status(status) in _WAITING}


def _status(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw
