"""The relay: moves numbered messages from the ``live:outbox`` list to the channel layer's groups.

One task per event loop of each websocket server process, started by the first socket that connects there. With
several servers each message is popped (and sent) by exactly one of them, to every subscriber everywhere.
Publishers never touch the channel layer, so they stay cheap and need no event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

from monitoring.live.publish import OUTBOX_KEY

logger = logging.getLogger("monitoring.live")

# A message that waited longer (no relay was running) is stale: every socket connected since holds a snapshot
# that covers it, and one connected before has its heartbeat.
MAX_AGE_SECONDS = 10.0
POP_TIMEOUT = 5
ERROR_PAUSE = 1.0

_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def live_relay_ensure() -> None:
    """Start this event loop's relay unless it runs already (call from async code)."""
    loop = asyncio.get_running_loop()
    task = _relays.get(loop)
    if task is None or task.done():
        _relays[loop] = loop.create_task(_relay(), name="live-relay")


async def live_relay_deliver(raw: bytes | str) -> int:
    """Send one outbox entry to its groups; returns how many groups it went to (0 for a stale one)."""
    entry: dict[str, Any] = json.loads(raw)
    if time.time() - float(entry.get("at", 0)) > MAX_AGE_SECONDS:
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0
    message = {key: entry.get(key) for key in ("epoch", "kind", "batch", "operator", "data")}
    for group, seq in zip(entry["groups"], entry["seqs"], strict=True):
        await layer.group_send(group, {"type": "live.change", "seq": int(seq), **message})
    return len(entry["groups"])


async def _relay() -> None:
    # The socket waits longer than BLPOP itself (which answers nil after POP_TIMEOUT).
    connection = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=POP_TIMEOUT + 5
    )
    try:
        while True:
            try:
                popped = await connection.blpop([OUTBOX_KEY], timeout=POP_TIMEOUT)
                if popped is not None:
                    await live_relay_deliver(popped[1])
            except asyncio.CancelledError:
                raise
            except Exception:
                # Whatever was popped is lost: subscribers see the gap and resync.
                logger.warning("live relay: delivery failed", exc_info=True)
                await asyncio.sleep(ERROR_PAUSE)
    finally:
        await connection.aclose()
