"""Outages of what a process depends on (Postgres, Redis, the chain), said once when they start and once when
they end, however many calls fail in between: a restart of Postgres must not bury the log in tracebacks."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("controlplane.outages")


class Outage:
    """One dependency of this process. ``note`` each failure, ``over`` each success; thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def note(self, detail: str) -> bool:
        """A failure; logged only when it starts an outage. Returns True when it did."""
        with self._lock:
            self._failures += 1
            if self._since is not None:
                return False
            self._since = time.monotonic()
        logger.warning("%s unavailable: %s; retrying with backoff (said once per outage)", self.name, detail)
        return True

    def over(self) -> None:
        with self._lock:
            if self._since is None:
                return
            lasted, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures = None, 0
        logger.warning("%s is back after %.1f s (%d failed attempts)", self.name, lasted, failures)


postgres_outage = Outage("postgres")
redis_outage = Outage("redis")
