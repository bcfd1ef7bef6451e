"""Publishing side of live updates: called from services, inside their transaction.

After the commit, one Redis round trip (a Lua script) numbers the message in each of its groups and appends it to
the ``live:outbox`` list; the relay (``dashboard.live.relay``, a task in each websocket server process) hands it to
the channel layer. So the committing code path (an intake request, a verification, an ingest chunk) pays about
0.2 ms and does no channel-layer work, nothing is left in a process's memory (an RQ work horse may leave with
``os._exit`` right after its job), and a Redis outage costs a log line: the publisher then stays quiet for
``OUTAGE_PAUSE`` seconds instead of waiting on Redis for every message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

from controlplane.outages import postgres_outage, redis_outage

logger = logging.getLogger("dashboard.live")

QUORUM_GROUP = "quorum"
SEQ_KEY_PREFIX = "live:seq:"
# Names this generation of sequence counters: a Redis that lost its data (restarted, flushed) starts a new epoch,
# and a client holding numbers of the old one resyncs instead of mistaking the new small numbers for old ones.
EPOCH_KEY = "live:epoch"
OUTBOX_KEY = "live:outbox"
# The newest messages kept for the relay; older ones are dropped (no relay running: nobody is listening).
OUTBOX_LIMIT = 10_000
# Sequence keys outlive any socket by far, yet a group nobody writes to any more (a batch long verified)
# leaves nothing behind.
SEQ_TTL_SECONDS = 7 * 24 * 3600
# Publishing is best effort: a short timeout, and after a failure no attempt for this long.
REDIS_TIMEOUT = 0.5
OUTAGE_PAUSE = 5.0

# KEYS: epoch, outbox, then each group's sequence key. ARGV: a new epoch, seq TTL, outbox limit, the message
# JSON (without epoch and numbers), then each group's increment (2 after a message of it was lost here).
_PUBLISH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local numbers = {}
for i = 3, #KEYS do
    numbers[#numbers + 1] = redis.call('INCRBY', KEYS[i], tonumber(ARGV[i + 2]))
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2]))
end
redis.call('RPUSH', KEYS[2], '{"epoch":"' .. epoch .. '","seqs":[' .. table.concat(numbers, ',') .. '],' .. ARGV[4])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return numbers
"""

_redis: redis.Redis | None = None
_publish_script: Any = None
_state_lock = threading.Lock()
_down_until = 0.0
# Groups whose message could not be numbered here: their next number skips one, so clients see the gap.
_skipped: set[str] = set()


def batch_group(identifier: str) -> str:
    """The channel-layer group of one batch (``batch.0x…``: 72 characters of [0-9a-z.], within the limit)."""
    return f"batch.{identifier}"


def seq_key(group: str) -> str:
    return SEQ_KEY_PREFIX + group


def _connection() -> redis.Redis:
    global _redis
    if _redis is None:
        # No retries: a retry with backoff is what would make a Redis outage slow the caller.
        _redis = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
    return _redis


def _script() -> Any:
    """The publishing script, sent by hash (EVALSHA) once Redis has it."""
    global _publish_script
    if _publish_script is None:
        _publish_script = _connection().register_script(_PUBLISH)
    return _publish_script


def _skip(groups: list[str]) -> None:
    with _state_lock:
        _skipped.update(groups)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def live_position(*, group: str) -> tuple[str, int]:
    """(epoch, number of the last message sent to ``group``, 0 before any). Raises on Redis errors."""
    pipe = _connection().pipeline(transaction=False)
    pipe.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
    pipe.mget([EPOCH_KEY, seq_key(group)])
    epoch, value = pipe.execute()[1]
    return _text(epoch), (int(value) if value is not None else 0)


# --- Publishing ----------------------------------------------------------------------------------


def live_notify(
    *,
    kind: str,
    batch: str | None = None,
    operator: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Send a change message to the overview group (and the batch's group) once the transaction commits.

    Nothing is sent for a rolled-back transaction. Outside a transaction the message goes at once. Never raises.
    """
    message = {"kind": kind, "batch": batch, "operator": operator, "data": data or {}}
    live_notify_each(label=kind, build=lambda: [message])


def live_notify_built(
    *,
    kind: str,
    build: Callable[[], dict[str, Any] | None],
    batch: str | None = None,
    operator: str | None = None,
) -> None:
    """Like ``live_notify``, with ``data`` read after the commit by ``build`` (absolute values as committed).

    ``build`` runs in the committing thread once the transaction is over, so a failing query cannot break the
    transaction; it returns None to send nothing.
    """

    def messages() -> list[dict[str, Any]]:
        data = build()
        return [] if data is None else [{"kind": kind, "batch": batch, "operator": operator, "data": data}]

    live_notify_each(label=kind, build=messages)


def live_notify_each(*, label: str, build: Callable[[], Iterable[dict[str, Any]]]) -> None:
    """Send the messages ``build`` returns after the commit (each a dict of kind, batch, operator, data), in order.

    For several messages that share one query: ``build`` runs once, in the committing thread, after the commit.
    """

    def built() -> None:
        try:
            for message in build():
                batch = message.get("batch")
                groups = [QUORUM_GROUP] + ([batch_group(batch)] if batch else [])
                live_send(groups=groups, message={**message, "data": message.get("data") or {}})
        except DatabaseError as exc:  # Postgres went away after the commit: an outage, said once, not a bug
            postgres_outage.note(
                f"live update {label} not built ({type(exc).__name__}: {str(exc).strip()[:200]})"
            )
        except Exception:
            logger.warning("live update %s not built", label, exc_info=True)

    try:
        # robust: whatever escapes, the commit's caller never sees it.
        transaction.on_commit(built, robust=True)
    except Exception:
        logger.warning("live update %s not queued", label, exc_info=True)


def live_send(*, groups: list[str], message: dict[str, Any]) -> list[int] | None:
    """Number ``message`` in each group and hand it to the relay now; returns the numbers, None if not sent.

    A failure is logged, never raised: the socket is not the truth, and a client that misses a message sees the
    gap in ``seq`` (or its heartbeat does) and resyncs.
    """
    global _down_until
    try:
        body = json.dumps({"groups": groups, "at": time.time(), **message}, separators=(",", ":"))
    except (TypeError, ValueError):
        logger.exception("live update %s is not JSON: not sent", message.get("kind"))
        _skip(groups)
        return None
    now = time.monotonic()
    with _state_lock:
        if now < _down_until:
            _skipped.update(groups)
            return None
        bumps = [2 if group in _skipped else 1 for group in groups]
        _skipped.difference_update(groups)
    try:
        numbers = _script()(
            keys=[EPOCH_KEY, OUTBOX_KEY, *(seq_key(group) for group in groups)],
            # The script writes the envelope's opening brace, epoch and numbers before the rest of ``body``.
            args=[uuid.uuid4().hex, SEQ_TTL_SECONDS, OUTBOX_LIMIT, body[1:], *bumps],
            client=_connection(),
        )
    except Exception as exc:
        with _state_lock:
            _down_until = now + OUTAGE_PAUSE
            _skipped.update(groups)
        redis_outage.note(
            f"live update {message.get('kind')} not sent ({exc}); live updates pause {OUTAGE_PAUSE:g} s at a time"
        )
        return None
    redis_outage.over()
    return [int(n) for n in numbers]


def _after_fork_in_child() -> None:
    # A lock held by a thread of the parent would never be released here; the connection pool resets itself.
    global _state_lock
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
