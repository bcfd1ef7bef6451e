"""The RQ worker the control plane runs: jobs in the worker's own process, one after another.

RQ's default worker forks a work-horse per job, so nothing a job keeps outlives it. Forwarding keeps one net/rpc
connection to the aggregator per thread (as Aligned's operators keep theirs); run in the worker's process, that
connection lasts from job to job and is dialled again only after a failure. Job timeouts still hold (RQ's signal
death penalty, in this process). Django's database connection is checked around each job, as around a request:
one a Postgres restart broke is replaced instead of failing every job after it.
"""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections
from rq.worker import SimpleWorker


class PersistentWorker(SimpleWorker):
    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        close_old_connections()
        try:
            return bool(super().perform_job(job, queue, execution))
        finally:
            close_old_connections()
