"""Postgres advisory locks that make exactly one replica of a singleton process active.

The lock lives on a dedicated connection (not Django's, which may be recycled): when the holder dies, Postgres
drops the connection and the lock with it, and a standby takes over on its next try.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from eth_utils import keccak

logger = logging.getLogger("controlplane.locks")


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
        connect_timeout=5,
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
        try:
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        except psycopg.Error:
            self.release()  # a connection that broke (Postgres restarted) is replaced on the next try
            raise
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
        """Unlock and close; a connection that already died took the lock with it."""
        conn, self.conn = self.conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        except psycopg.Error:
            pass
        finally:
            conn.close()


@contextmanager
def advisory_lock(name: str) -> Iterator[AdvisoryLock]:
    """Hold the named lock for the body, or raise TimeoutError at once when another process holds it.

    For one-off runs (``--once``); a long-running loop stands by for its lock through ``loop_run`` instead.
    """
    lock = AdvisoryLock(name)
    if not lock.try_acquire():
        lock.release()
        raise TimeoutError(f"lock {name!r} is held by another process")
    try:
        yield lock
    finally:
        lock.release()


class PgListener:
    """LISTEN on a dedicated connection, (re)connected when needed: notifications sent while it was down are
    lost, so a listener always has a periodic sweep behind it."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None

    def wait(self, *, timeout: float, gather: float) -> set[str]:
        """Payloads of the notifications that arrive within ``timeout``, plus ``gather`` seconds after the first."""
        if self.conn is None or self.conn.closed:
            self.conn = dedicated_connection()
            self.conn.execute(f"LISTEN {self.channel}")
        payloads: set[str] = set()
        try:
            for notify in self.conn.notifies(timeout=timeout, stop_after=1):
                payloads.add(notify.payload)
            if payloads:
                for notify in self.conn.notifies(timeout=gather):
                    payloads.add(notify.payload)
        except psycopg.Error:
            self.close()
            raise
        return payloads

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            conn.close()
