"""The one periodic-loop runner: every long-running command (ingest, verifier, probe_operators, recovery,
alerts) and the devnet's own loops (the batcher, the aggregator's and operators' followers) are step functions
run by ``loop_run``.

What it does for all of them, the same way:

- stops on SIGTERM/SIGINT, between steps and while standing by for the lock;
- with a lock name, holds that Postgres advisory lock so exactly one replica is active; the others stand by
  and one takes over within ``standby_poll`` seconds when the holder dies. A holder whose lock connection
  drops (a Postgres restart) goes back to standing by instead of exiting;
- rides out outages of Postgres, Redis and whatever else the step names (the chain): it says so once per
  outage, backs off (capped), drops broken connections, and goes on when the dependency is back;
- a bug in a step (any other exception) is logged with its traceback once per run of identical failures and
  retried with the same backoff: a periodic job that exits for good loses work;
- only the exceptions a step declares fatal end the loop (a reorg deeper than the ledger keeps, say);
- each successful pass is recorded, at most once a second, as a ``LoopHeartbeat`` row: who runs, and is alive.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
import redis
from django.db import DatabaseError, InterfaceError, close_old_connections, connection, connections
from django.utils import timezone

from controlplane.locks import AdvisoryLock
from controlplane.outages import Outage, postgres_outage, redis_outage

logger = logging.getLogger("controlplane.loops")

POSTGRES_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, InterfaceError, psycopg.Error)
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
REPLICA = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_EVERY = 1.0
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 5.0


@dataclass
class Loop:
    """A periodic job: ``step`` runs every ``interval`` seconds (measured start to start)."""

    name: str
    step: Callable[[], object]
    interval: float
    # An advisory lock name, or a function giving it (evaluated under the runner's outage handling: the ingest
    # lock is named after the chain id, which needs the chain).
    lock: str | Callable[[], str] | None = None
    # Called each time this replica becomes the active one (after taking the lock), before its first step.
    on_active: Callable[[], object] | None = None
    # Outages beyond Postgres and Redis this step can meet, by name: {"chain": (RpcError,)}.
    outages: Mapping[str, tuple[type[BaseException], ...]] = field(default_factory=dict)
    fatal: tuple[type[BaseException], ...] = ()
    standby_poll: float = 2.0
    backoff_cap: float = BACKOFF_CAP
    # Whether the step uses the control plane's Postgres and Redis: heartbeat rows, connection hygiene and their
    # outage handling. The devnet's own loops (batcher, aggregator, operators) use neither.
    infra: bool = True


def stop_on_signals(stopping: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stopping`` (only the main thread may install handlers); the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    return {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def _backoff(failures: int, cap: float) -> float:
    return float(min(cap, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


def _close_old_connections() -> None:
    """Connection hygiene between passes; closing a connection a restart already broke must not end the loop."""
    try:
        close_old_connections()
    except Exception:
        logger.debug("closing old connections failed", exc_info=True)


def _drop_connections() -> None:
    """Broken connections go back to the pool, which discards them; the next step gets fresh ones."""
    try:
        connections.close_all()
    except Exception:  # closing a dead connection may itself fail; it is gone either way
        logger.debug("closing connections after an outage failed", exc_info=True)


class _Runner:
    def __init__(self, loop: Loop, stopping: threading.Event) -> None:
        self.loop = loop
        self.stopping = stopping
        self.lock: AdvisoryLock | None = None
        self.active = loop.lock is None
        self.said_standby = False
        self.failures = 0
        self.last_bug: str | None = None
        self.extra = {name: Outage(name) for name in loop.outages}
        self.started_at = timezone.now()
        self.passes = 0
        self.last_beat = float("-inf")
        self.redis_failed = False
        self.postgres_errors = POSTGRES_ERRORS if loop.infra else ()
        self.redis_errors = REDIS_ERRORS if loop.infra else ()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.active and not self._take_lock():
                    continue
                started = time.monotonic()
                if not self._attempt(self.loop.step, beat=self.loop.infra):
                    continue
                if self.loop.infra:
                    _close_old_connections()
                if self.lock is not None and not self.lock.still_held():
                    logger.warning(
                        "%s: lost the lock %r (its connection dropped); standing by to take it again",
                        self.loop.name,
                        self.lock.name,
                    )
                    self.lock.release()
                    self.active = False
                    continue
                self.stopping.wait(max(0.0, self.loop.interval - (time.monotonic() - started)))
        finally:
            if self.lock is not None:
                self.lock.release()

    def _take_lock(self) -> bool:
        if self.lock is None:
            spec = self.loop.lock
            names: list[str] = []
            if callable(spec):
                naming = spec
                if not self._attempt(lambda: names.append(naming())):
                    return False
            elif spec is not None:
                names.append(spec)
            self.lock = AdvisoryLock(names[0])
        try:
            taken = self.lock.try_acquire()
        except POSTGRES_ERRORS as exc:
            self._failed(postgres_outage, exc)
            return False
        postgres_outage.over()
        if not taken:
            if not self.said_standby:
                logger.info("standing by: lock %r is held by another replica", self.lock.name)
                self.said_standby = True
            self.stopping.wait(self.loop.standby_poll)
            return False
        self.said_standby = False
        self.active = True
        if self.loop.on_active is not None and not self._attempt(self.loop.on_active):
            self.active = False
            self.lock.release()
            return False
        return True

    def _attempt(self, call: Callable[[], object], *, beat: bool = False) -> bool:
        """Run one step (and record the pass); on failure say so (once per outage or bug), back off, and
        return False. Nothing a step or its heartbeat raises escapes, but what the loop declared fatal."""
        try:
            call()
            if beat:
                self._beat()
        except self.loop.fatal:
            raise
        except self.postgres_errors as exc:
            self._failed(postgres_outage, exc)
            return False
        except self.redis_errors as exc:
            self.redis_failed = True
            self._failed(redis_outage, exc)
            return False
        except Exception as exc:
            for name, kinds in self.loop.outages.items():
                if isinstance(exc, kinds):
                    self._failed(self.extra[name], exc)
                    return False
            signature = f"{type(exc).__name__}: {exc}"
            if signature != self.last_bug:
                logger.exception("%s: step failed; retrying with backoff", self.loop.name)
                self.last_bug = signature
            self._wait_after_failure()
            return False
        self.failures = 0
        self.last_bug = None
        if self.loop.infra:
            postgres_outage.over()
        if self.redis_failed:  # only a step that failed on Redis proves, by passing, that it is back
            redis_outage.over()
            self.redis_failed = False
        for outage in self.extra.values():
            outage.over()
        return True

    def _beat(self) -> None:
        """Record the pass (at most once a second): proof, readable by anyone, that this loop is alive."""
        now = time.monotonic()
        self.passes += 1
        if now - self.last_beat < HEARTBEAT_EVERY:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO controlplane_loopheartbeat (name, replica, started_at, last_pass_at, passes)
                VALUES (%s, %s, %s, now(), %s)
                ON CONFLICT (name, replica) DO UPDATE SET last_pass_at = now(), passes = EXCLUDED.passes
                """,
                [self.loop.name, REPLICA, self.started_at, self.passes],
            )
        self.last_beat = now

    def _failed(self, outage: Outage, exc: BaseException) -> None:
        outage.note(f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        if outage is postgres_outage:
            _drop_connections()
        self._wait_after_failure()

    def _wait_after_failure(self) -> None:
        self.failures += 1
        self.stopping.wait(_backoff(self.failures, max(self.loop.backoff_cap, self.loop.interval)))


def loop_run(loop: Loop, *, stopping: threading.Event | None = None) -> None:
    """Run ``loop`` until SIGTERM/SIGINT (or ``stopping`` is set); returns normally when asked to stop."""
    stopping = stopping or threading.Event()
    previous = stop_on_signals(stopping)
    try:
        _Runner(loop, stopping).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
