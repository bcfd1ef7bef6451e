"""What alert rules learn outside the ledger: the chain node's head, the aggregator's health, how long each held.

Each is observed at most once per evaluation (lazily, only when a rule asks) and each state's start is kept in
Postgres (AlertWatch), not in memory: a replica that takes over knows the aggregator has been failing for five
minutes without having watched it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from alerts.models import AlertWatch
from chain import ChainClient, RpcError
from ledger.models import IngestCursor
from recovery.aggregator import AggregatorUnavailable, aggregator_health

AGGREGATOR_KEY = "aggregator"
CHAIN_KEY = "chain"
CURSOR_PREFIX = "cursor:"

_RECORD = """
INSERT INTO {table} (key, value, since) VALUES (%s, %s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, since = EXCLUDED.since
    WHERE {table}.value <> EXCLUDED.value
"""


def watch_record(*, key: str, value: str, now: datetime) -> datetime:
    """Record that ``key`` is ``value`` at ``now``; returns since when it has been (``now`` when it just changed)."""
    table = connection.ops.quote_name(AlertWatch._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_RECORD.format(table=table), [key, value[:200], now])
        cursor.execute(f"SELECT since FROM {table} WHERE key = %s", [key])
        row = cursor.fetchone()
    assert row is not None
    since: datetime = row[0]
    return since


@dataclass(frozen=True)
class ChainView:
    """The chain node as the evaluator sees it; ``since`` is when it became reachable or unreachable."""

    url: str
    reachable: bool
    since: datetime
    chain_id: int | None = None
    head: int | None = None
    genesis_hash: str = ""
    error: str = ""


@dataclass(frozen=True)
class AggregatorView:
    reachable: bool
    since: datetime
    boot_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class CursorView:
    """One contract's ingest cursor and since when it has stood there with confirmed blocks left to ingest."""

    cursor: IngestCursor
    behind: int  # confirmed blocks not yet ingested (0 when caught up)
    behind_since: datetime | None  # None while caught up


def chain_rpc_url() -> str | None:
    """The node the ingester follows (CHAIN_RPC_URL, resolved in settings); None when none is configured."""
    return str(settings.CHAIN_RPC_URL) if settings.CHAIN_RPC_URL else None


def chain_observe(*, now: datetime) -> ChainView | None:
    """Chain id, head and genesis of the node; None when no chain is configured at all."""
    url = chain_rpc_url()
    if url is None:
        return None
    timeout = float(settings.ALERT_CHAIN_TIMEOUT)
    client = ChainClient(url, timeout=timeout, max_attempts=2, backoff_base=0.2, backoff_cap=0.5)
    try:
        chain_id = client.chain_id()
        head = client.block_number()
        genesis = client.get_block(0)
    except RpcError as exc:
        since = watch_record(key=CHAIN_KEY, value="unreachable", now=now)
        return ChainView(url=url, reachable=False, since=since, error=str(exc)[:300])
    finally:
        client.close()
    since = watch_record(key=CHAIN_KEY, value="reachable", now=now)
    return ChainView(
        url=url,
        reachable=True,
        since=since,
        chain_id=chain_id,
        head=head,
        genesis_hash=genesis.hash if genesis else "",
    )


def aggregator_observe(*, now: datetime) -> AggregatorView:
    try:
        answer = aggregator_health()
    except AggregatorUnavailable as exc:
        since = watch_record(key=AGGREGATOR_KEY, value="unreachable", now=now)
        return AggregatorView(reachable=False, since=since, error=str(exc)[:300])
    since = watch_record(key=AGGREGATOR_KEY, value="reachable", now=now)
    return AggregatorView(reachable=True, since=since, boot_id=answer.boot_id)


def cursors_observe(*, chain: ChainView, now: datetime) -> list[CursorView]:
    """Every cursor of the node's chain, with since when it has been standing behind the confirmed head.

    The watched value changes whenever the cursor moves or catches up, so ``behind_since`` measures only time
    spent standing still with work to do: an idle chain that produces a block after an hour is not "stopped".
    """
    assert chain.head is not None
    assert chain.chain_id is not None
    target = chain.head - int(settings.INGEST_CONFIRMATIONS)
    cursors = list(IngestCursor.objects.filter(chain_id=chain.chain_id).order_by("address"))
    views = []
    for cursor in cursors:
        behind = max(0, target - cursor.block_number)
        state = "behind" if behind else "current"
        since = watch_record(
            key=f"{CURSOR_PREFIX}{cursor.chain_id}:{cursor.address}",
            value=f"{cursor.block_number}:{cursor.block_hash}:{state}",
            now=now,
        )
        views.append(CursorView(cursor=cursor, behind=behind, behind_since=since if behind else None))
    # Cursors a ledger reset removed leave no watch behind.
    kept = [f"{CURSOR_PREFIX}{c.chain_id}:{c.address}" for c in cursors]
    AlertWatch.objects.filter(key__startswith=CURSOR_PREFIX).exclude(key__in=kept).delete()
    return views


_UNSET = object()


class RuleContext:
    """One evaluation's clock and its outside observations, each made once and only if a rule asks for it."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self._chain: object = _UNSET
        self._aggregator: AggregatorView | None = None
        self._cursors: list[CursorView] | None = None

    def chain(self) -> ChainView | None:
        if self._chain is _UNSET:
            self._chain = chain_observe(now=self.now)
        assert self._chain is None or isinstance(self._chain, ChainView)
        return self._chain

    def aggregator(self) -> AggregatorView:
        if self._aggregator is None:
            self._aggregator = aggregator_observe(now=self.now)
        return self._aggregator

    def cursors(self) -> list[CursorView] | None:
        """The node chain's cursors, or None when the chain cannot be asked for its head now."""
        chain = self.chain()
        if chain is None or not chain.reachable:
            return None
        if self._cursors is None:
            self._cursors = cursors_observe(chain=chain, now=self.now)
        return self._cursors
