"""Postgres advisory locks that make exactly one replica of a singleton process active.

The lock lives on a dedicated connection (not Django's, which may be recycled): when the holder dies, Postgres
drops the connection and the lock with it, and a standby takes over on its next try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from eth_utils import keccak

logger = logging.getLogger("monitoring.locks")


def lock_key(name: str) -> int:
    return int.from_bytes(keccak(name.encode())[:8], "big", signed=True)


def dedicated_connection() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection of its own (not from Django's pool), for locks and LISTEN."""
    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=db["NAME"],
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        autocommit=True,
        application_name=f"lock-holder:{db['NAME']}",
    )


class AdvisoryLock:
    def __init__(self, name: str) -> None:
        self.name = name
        self.key = lock_key(name)
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None

    def try_acquire(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = dedicated_connection()
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        return bool(row and row[0])

    def still_held(self) -> bool:
        """False when the lock connection died (then another replica may hold it now)."""
        if self.conn is None or self.conn.closed:
            return False
        try:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND objid::bigint = (%s::bigint & 4294967295) AND classid::bigint = ((%s::bigint >> 32) & 4294967295)",
                [self.key, self.key],
            ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            finally:
                self.conn.close()
        self.conn = None


@contextmanager
def advisory_lock(name: str, *, wait: bool = True, poll: float = 2.0) -> Iterator[AdvisoryLock]:
    """Hold the named lock for the body; with ``wait``, stand by until it is free."""
    lock = AdvisoryLock(name)
    announced = False
    while not lock.try_acquire():
        if not wait:
            lock.release()
            raise TimeoutError(f"lock {name!r} is held by another process")
        if not announced:
            logger.info("standing by: lock %r is held by another replica", name)
            announced = True
        time.sleep(poll)
    try:
        yield lock
    finally:
        lock.release()
