"""The relay: moves numbered messages from the ``live:outbox`` list to the channel layer's groups.

One task per event loop of each websocket server process, started by the first socket that connects there. With
several servers each message is popped (and sent) by exactly one of them, to every subscriber everywhere.
Publishers never touch the channel layer, so they stay cheap and need no event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings

from dashboard.live.publish import OUTBOX_KEY

logger = logging.getLogger("dashboard.live")

# A message that waited longer (no relay was running) is stale: every socket connected since holds a snapshot
# that covers it, and one connected before has its heartbeat.
MAX_AGE_SECONDS = 10.0
# Short, so an abandoned BLPOP thread ends soon after its relay is cancelled.
POP_TIMEOUT = 1
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
    # BLPOP runs on a thread of its own: a blocked asyncio read that is cancelled (the loop closing) can leave
    # redis-py waiting forever, and so the loop's shutdown. A cancelled relay abandons its thread, which ends
    # within POP_TIMEOUT; whatever that thread pops afterwards is pushed back to the head of the outbox, for the
    # next relay (a relay restarted on a new event loop would otherwise lose the first message after it).
    connection = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=POP_TIMEOUT + 5
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-relay")
    pop = functools.partial(connection.blpop, [OUTBOX_KEY], timeout=POP_TIMEOUT)
    task = asyncio.current_task()

    def give_back(popped: Future[Any]) -> None:
        if popped.cancelled():  # it never ran: nothing was popped
            return
        try:
            item = popped.result()
            if item is not None:
                connection.lpush(OUTBOX_KEY, item[1])
        except Exception:
            logger.warning("live relay: a message popped while stopping was lost", exc_info=True)

    try:
        # A cancellation requested while the thread's answer was already on its way can be lost in the hand-over;
        # checking for it each round still stops the relay (else the loop's shutdown would wait for it forever).
        while task is None or not task.cancelling():
            popping = executor.submit(pop)
            received = False
            try:
                popped = await asyncio.wrap_future(popping)
                received = True
                if popped is not None:
                    await live_relay_deliver(popped[1])
            except asyncio.CancelledError:
                if not received:  # the thread may still pop one: it goes back to the outbox
                    popping.add_done_callback(give_back)
                raise
            except Exception:
                # Whatever was popped is lost: subscribers see the gap and resync.
                logger.warning("live relay: delivery failed", exc_info=True)
                await asyncio.sleep(ERROR_PAUSE)
    finally:
        executor.submit(connection.close)
        executor.shutdown(wait=False)
