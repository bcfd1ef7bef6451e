"""Publishing side of live updates: called from services, inside their transaction.

After the commit, one Redis round trip (a Lua script) numbers the message in each of its groups and appends it to
the ``live:outbox`` list; the relay (``dashboard.live.relay``, a task in each websocket server process) hands it to
the channel layer. So the committing code path (an intake request, a verification, an ingest chunk) pays about
0.2 ms and does no channel-layer work, nothing is left in a process's memory (an RQ work horse may leave with
``os._exit`` right after its job), and a Redis outage costs a log line: the publisher then stays quiet for
``OUTAGE_PAUSE`` seconds instead of waiting on Redis for every message.
"""

from __future__ import annotations

import hashlib
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
# Sent by hash (EVALSHA) once Redis has it.
_PUBLISH_SHA = hashlib.sha1(_PUBLISH.encode()).hexdigest()

_redis: redis.Redis | None = None
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
    Every message of one transaction goes to Redis in one round trip (see ``_AfterCommit``).
    """
    try:
        hook = _after_commit()
        if hook is None:  # no transaction: at once
            _AfterCommit([(label, build)])()
            return
        hook.builds.append((label, build))
    except Exception:
        logger.warning("live update %s not queued", label, exc_info=True)


def live_notify_merged(
    *, label: str, item: Any, build_many: Callable[[list[Any]], Iterable[dict[str, Any]]]
) -> None:
    """Like ``live_notify_each`` for messages about one ``item`` (a batch, say) that a transaction announces for many
    items: ``build_many`` (a module-level function) builds all of the transaction's items at once, in the queries
    one item's build would take, at the place of the first one."""
    try:
        hook = _after_commit()
        if hook is None:
            _AfterCommit([(label, lambda: build_many([item]))])()
            return
        hook.merge(label=label, item=item, build_many=build_many)
    except Exception:
        logger.warning("live update %s not queued", label, exc_info=True)


def _after_commit() -> _AfterCommit | None:
    """The hook that sends this transaction's live messages and that one announced now may join; None outside a
    transaction."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    hooks = connection.run_on_commit
    # The transaction's last hook sends live messages: this one goes with them unless a rollback could drop one
    # and not the other. Django drops a hook when a savepoint it was registered in rolls back; every savepoint
    # open now is one this message must fall with, so each must be among that hook's (the hook's other
    # savepoints are released, and can no longer roll back).
    if hooks and isinstance(hooks[-1][1], _AfterCommit) and set(connection.savepoint_ids) <= hooks[-1][0]:
        return hooks[-1][1]
    hook = _AfterCommit([])
    # robust: whatever escapes, the commit's caller never sees it.
    transaction.on_commit(hook, robust=True)
    return hook


class _AfterCommit:
    """The live messages that a transaction's writes announced one after another, built and sent together once it
    has committed: one round trip to Redis for a stored group of posts or a verifier pass, not one per message."""

    def __init__(self, builds: list[tuple[str, Callable[[], Iterable[dict[str, Any]]]]]) -> None:
        self.builds = builds
        self._merged: dict[Callable[[list[Any]], Iterable[dict[str, Any]]], list[Any]] = {}

    def merge(
        self, *, label: str, item: Any, build_many: Callable[[list[Any]], Iterable[dict[str, Any]]]
    ) -> None:
        items = self._merged.get(build_many)
        if items is None:
            items = self._merged[build_many] = []
            self.builds.append((label, lambda: build_many(items)))
        items.append(item)

    def __call__(self) -> None:
        messages: list[tuple[list[str], dict[str, Any]]] = []
        for label, build in self.builds:
            try:
                for message in build():
                    batch = message.get("batch")
                    groups = [QUORUM_GROUP] + ([batch_group(batch)] if batch else [])
                    messages.append((groups, {**message, "data": message.get("data") or {}}))
            # Postgres went away after the commit: an outage, said once, not a bug.
            except DatabaseError as exc:
                postgres_outage.note(
                    f"live update {label} not built ({type(exc).__name__}: {str(exc).strip()[:200]})"
                )
            except Exception:
                logger.warning("live update %s not built", label, exc_info=True)
        if messages:
            live_send_many(messages=messages)


def live_send(*, groups: list[str], message: dict[str, Any]) -> list[int] | None:
    """Number ``message`` in each group and hand it to the relay now; returns the numbers, None if not sent.

    A failure is logged, never raised: the socket is not the truth, and a client that misses a message sees the
    gap in ``seq`` (or its heartbeat does) and resyncs.
    """
    return live_send_many(messages=[(groups, message)])[0]


def live_send_many(*, messages: list[tuple[list[str], dict[str, Any]]]) -> list[list[int] | None]:
    """``live_send`` for each (groups, message), in order, in one round trip to Redis."""
    global _down_until
    bodies: list[tuple[list[str], str | None]] = []
    for groups, message in messages:
        try:
            bodies.append(
                (groups, json.dumps({"groups": groups, "at": time.time(), **message}, separators=(",", ":")))
            )
        except (TypeError, ValueError):
            logger.exception("live update %s is not JSON: not sent", message.get("kind"))
            _skip(groups)
            bodies.append((groups, None))
    sendable = [(groups, body) for groups, body in bodies if body is not None]
    if not sendable:
        return [None for _ in messages]
    now = time.monotonic()
    with _state_lock:
        if now < _down_until:
            for groups, _ in sendable:
                _skipped.update(groups)
            return [None for _ in messages]
        bumps = []
        for groups, _ in sendable:
            bumps.append([2 if group in _skipped else 1 for group in groups])
            _skipped.difference_update(groups)
    kinds = sorted({str(message.get("kind")) for _, message in messages})

    def publish() -> list[Any]:
        pipeline = _connection().pipeline(transaction=False)
        for (groups, body), increments in zip(sendable, bumps, strict=True):
            keys = [EPOCH_KEY, OUTBOX_KEY, *(seq_key(group) for group in groups)]
            # The script writes the envelope's opening brace, epoch and numbers before the rest of ``body``.
            args: list[str | int] = [uuid.uuid4().hex, SEQ_TTL_SECONDS, OUTBOX_LIMIT, body[1:], *increments]
            pipeline.evalsha(_PUBLISH_SHA, len(keys), *keys, *args)
        return pipeline.execute()

    try:
        try:
            answers = publish()
        except redis.exceptions.NoScriptError:  # a new or flushed Redis: nothing ran; load the script, again
            _connection().script_load(_PUBLISH)
            answers = publish()
    except Exception as exc:
        with _state_lock:
            _down_until = now + OUTAGE_PAUSE
            for groups, _ in sendable:
                _skipped.update(groups)
        redis_outage.note(
            f"live update {', '.join(kinds)} not sent ({exc}); live updates pause {OUTAGE_PAUSE:g} s at a time"
        )
        return [None for _ in messages]
    redis_outage.over()
    numbered = iter([int(n) for n in answer] for answer in answers)
    return [None if body is None else next(numbered) for _, body in bodies]


def _after_fork_in_child() -> None:
    # A lock held by a thread of the parent would never be released here; the connection pool resets itself.
    global _state_lock
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
