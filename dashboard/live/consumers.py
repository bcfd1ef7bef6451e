"""Websocket consumers: a snapshot on connect, then numbered change messages; any gap is repaired with a snapshot.

Thin adapters: authorization, the group's sequence, and the snapshot selectors in ``dashboard.live.snapshots``.
Each consumer handles one thing at a time (a lock serialises changes, resyncs and heartbeats), so ``last_seq``
always describes what the client holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import connections

from dashboard.live.publish import QUORUM_GROUP, batch_group, live_position
from dashboard.live.relay import live_relay_ensure
from dashboard.live.snapshots import live_batch_snapshot, live_overview_snapshot

logger = logging.getLogger("dashboard.live")

# Close codes (4000-4999 are the application's): the client should not retry these as they are.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
# Closed because a snapshot could not be built (the database is unavailable): reconnecting later is right.
CLOSE_TRY_AGAIN = 1013
IDENTIFIER = re.compile(r"0x[0-9a-f]{64}")
# A client's resync requests are answered at most this often (each builds a snapshot).
RESYNC_MIN_INTERVAL = 0.2
# Every heartbeat re-joins the group (channels_redis forgets members after a day, and everything after a Redis
# flush) and compares the group's sequence with the client's: a trailing gap (a last message lost) shows only there.


def _heartbeat_seconds() -> float:
    return float(settings.LIVE_HEARTBEAT_SECONDS)


class LiveConsumer(AsyncWebsocketConsumer):
    """Base of the live sockets: subclasses name their group and build their snapshot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group: str | None = None
        # The number of the last change the client holds (or the snapshot it holds covers), and its epoch.
        self.last_seq = 0
        self.epoch: str | None = None
        self._lock = asyncio.Lock()
        self._last_snapshot_at = 0.0
        self._closing = False
        # Set when the sequence could not be read: the next heartbeat resends the snapshot.
        self._dirty = False
        # A sequence number seen at a heartbeat but not yet forwarded; still missing at the next one = lost.
        self._suspect: int | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def live_group(self) -> str | None:
        """The channel-layer group to follow, or None when the request is malformed."""
        raise NotImplementedError

    def live_snapshot(self) -> dict[str, Any] | None:
        """The snapshot ``data`` (synchronous: runs in a worker thread)."""
        raise NotImplementedError

    # --- Connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not settings.PUBLIC_DASHBOARD and not (user is not None and user.is_authenticated):
            # Accept, then close: only an accepted socket can tell the browser why (a refused handshake is 1006).
            await self.accept()
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        group = self.live_group()
        if group is None:
            await self.accept()
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        live_relay_ensure()
        # Join before reading the sequence: a message numbered in between is then received, not lost.
        await self.channel_layer.group_add(group, self.channel_name)
        self.group = group
        await self.accept()
        async with self._lock:
            await self._send_snapshot()
        if not self._closing:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat
        if self.group is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data or "")
        except ValueError:
            return  # not ours to answer; the socket stays usable
        if self.group is None or not isinstance(content, dict) or content.get("type") != "resync":
            return
        async with self._lock:
            if self._closing:
                return
            wait = self._last_snapshot_at + RESYNC_MIN_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._send_snapshot()

    # --- Changes ---------------------------------------------------------------------------------

    async def live_change(self, event: dict[str, Any]) -> None:
        """A numbered change from the group: forward it, drop it (already in the snapshot), or resync on a gap."""
        async with self._lock:
            seq = int(event.get("seq") or 0)
            if self._closing:
                return
            if event.get("epoch") != self.epoch:
                await self._send_snapshot()  # numbered by a Redis that forgot the client's numbers
                return
            if seq <= self.last_seq:
                return  # committed before the client's snapshot was read: already in it
            if seq > self.last_seq + 1:
                await self._send_snapshot()
                return
            self.last_seq = seq
            await self._send_json(
                {
                    "type": "change",
                    "seq": seq,
                    "kind": event.get("kind"),
                    "batch": event.get("batch"),
                    "operator": event.get("operator"),
                    "data": event.get("data") or {},
                }
            )

    # --- Snapshots -------------------------------------------------------------------------------

    def _read_snapshot(self) -> tuple[tuple[str, int] | None, dict[str, Any] | None]:
        """The group's position, then the snapshot: whatever was numbered before the read is in the data."""
        assert self.group is not None
        try:
            position: tuple[str, int] | None = live_position(group=self.group)
        except Exception:
            logger.warning("live sequence of %s unreadable", self.group, exc_info=True)
            position = None
        try:
            return position, self.live_snapshot()
        finally:
            # Back to the pool now, from this worker thread: nothing else would return it (the thread is reused
            # for any other work, or ends with the connection still checked out).
            connections.close_all()

    async def _send_snapshot(self) -> None:
        try:
            position, data = await database_sync_to_async(self._read_snapshot, thread_sensitive=False)()
        except Exception:
            logger.exception("live snapshot of %s failed", self.group)
            self._closing = True
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self._dirty = position is None
        self._suspect = None
        if position is not None:
            self.epoch, self.last_seq = position
        self._last_snapshot_at = time.monotonic()
        await self._send_json({"type": "snapshot", "seq": self.last_seq, "data": data})

    async def _send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- Heartbeat -------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(_heartbeat_seconds())
            try:
                async with self._lock:
                    await self._heartbeat_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("live heartbeat of %s failed", self.group, exc_info=True)

    async def _heartbeat_once(self) -> None:
        if self._closing or self.group is None:
            return
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
            epoch, current = await sync_to_async(live_position, thread_sensitive=False)(group=self.group)
        except Exception:
            self._dirty = True
            logger.warning("live heartbeat of %s: Redis unavailable", self.group)
            return
        lost = self._suspect is not None and self.last_seq < self._suspect
        # Another epoch, or a number below the client's: Redis lost its data (restarted, flushed).
        if self._dirty or epoch != self.epoch or current < self.last_seq or lost:
            await self._send_snapshot()
            return
        self._suspect = current if current > self.last_seq else None


class QuorumConsumer(LiveConsumer):
    """``ws/quorum/``: the overview and the lists."""

    def live_group(self) -> str | None:
        return QUORUM_GROUP

    def live_snapshot(self) -> dict[str, Any] | None:
        return live_overview_snapshot()


class BatchConsumer(LiveConsumer):
    """``ws/batches/<identifier>/``: one batch (its snapshot ``data`` is null until the batch is ingested)."""

    identifier = ""

    def live_group(self) -> str | None:
        identifier = str(self.scope.get("url_route", {}).get("kwargs", {}).get("identifier", ""))
        if not IDENTIFIER.fullmatch(identifier):
            return None
        self.identifier = identifier
        return batch_group(identifier)

    def live_snapshot(self) -> dict[str, Any] | None:
        return live_batch_snapshot(identifier=self.identifier)
