"""Publishing side of live updates: called from services, inside their transaction."""

from __future__ import annotations

import logging
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger("monitoring.live")

QUORUM_GROUP = "quorum"
_SEQ_KEY = "live:seq:"
_redis: redis.Redis | None = None


def batch_group(identifier: str) -> str:
    return f"batch.{identifier}"


def _connection() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis


def live_notify(
    *,
    kind: str,
    batch: str | None = None,
    operator: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Send a change message to the overview group (and the batch's group) once the transaction commits.

    Nothing is sent for a rolled-back transaction. Outside a transaction the message goes at once.
    """
    message = {"kind": kind, "batch": batch, "operator": operator, "data": data or {}}
    groups = [QUORUM_GROUP] + ([batch_group(batch)] if batch else [])
    transaction.on_commit(lambda: live_send(groups=groups, message=message))


def live_send(*, groups: list[str], message: dict[str, Any]) -> None:
    """Number and send one message to each group. A failure is logged, never raised: the socket is not the truth,
    and a client that misses a message sees the gap in ``seq`` and refetches."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        pipe = _connection().pipeline(transaction=False)
        for group in groups:
            pipe.incr(_SEQ_KEY + group)
        sequences = pipe.execute()
        for group, seq in zip(groups, sequences, strict=True):
            async_to_sync(layer.group_send)(group, {"type": "live.change", "seq": int(seq), **message})
    except Exception:
        logger.warning("live update %s not sent", message.get("kind"), exc_info=True)
