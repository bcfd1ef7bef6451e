"""Follow the chain into the ledger: per-contract cursors, confirmation depth, reorg detection by parent hash.

One chunk of logs, the ledger rows it implies, the blocks it crossed and the cursor move commit together, so a
crash at any instant resumes exactly where the last commit left off: no gap, no duplicate.

Reorgs are found two ways on every advance: the cursor's block must still be canonical (its number maps to its
hash), and the first block of the next chunk must have the cursor's hash as parent. Inside a chunk near the head,
every log's block hash must match the canonical header at its height. On a mismatch the ingester walks back over
the blocks it kept to the newest one still canonical, marks everything above it removed, rebuilds what those rows
touched, and moves the cursor there. A fork below every kept block is a deep reorg: recorded, logged, raised.

Backfill speed: the next range (its eth_getLogs and headers) is fetched on one worker thread and decoded on
another while the current one is written, and each range's span follows the log density so that it holds about
``range_logs`` logs (fetching and writing one then take about as long). A range fetched during an earlier write is
checked again before it is written: if its last block's hash changed, a reorg came in between and it is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection, transaction

from chain import AdaptiveRange, BlockHeader, ChainClient, RawLog, fetch_logs
from chain.abi import REGISTRY_EVENTS, SERVICE_MANAGER_EVENTS, TOPICS
from ledger.ingest.ledger import (
    PreparedChunk,
    blocks_remember,
    chunk_prepare,
    ledger_apply_rows,
    ledger_rollback,
)
from ledger.models import Block, IngestCursor, IngestIncident, IngestIncidentKind

logger = logging.getLogger("ledger.ingest")

ZERO_HASH = "0x" + "00" * 32
# Logs per committed sub-chunk, for a range that came back fuller than its target (the first ones, a dense
# stretch): a transaction's size stays bounded, and its commit is still amortised.
SUBCHUNK_LOGS = 2000


def split_logs(*, lo: int, hi: int, logs: list[RawLog], max_logs: int) -> list[tuple[int, int, list[RawLog]]]:
    """Cut [lo, hi] into contiguous ranges holding at most ``max_logs`` logs each, never splitting a block."""
    if len(logs) <= max_logs:
        return [(lo, hi, logs)]
    parts: list[tuple[int, int, list[RawLog]]] = []
    start, current = lo, []
    for i, log in enumerate(logs):
        current.append(log)
        next_block = logs[i + 1].block_number if i + 1 < len(logs) else None
        if len(current) >= max_logs and next_block != log.block_number and log.block_number < hi:
            parts.append((start, log.block_number, current))
            start, current = log.block_number + 1, []
    parts.append((start, hi, current))
    return parts


class DeepReorgError(RuntimeError):
    """The chain forked below every block the ingester kept: it cannot repair this by itself."""


class ChainChangedError(RuntimeError):
    """The node serves another chain (different genesis) than the one the ledger was built from."""


class ChunkRaced(RuntimeError):
    """The chain moved under a chunk (a log's block is no longer canonical): refetch it."""


class PrefetchStopped(Exception):
    """The fetch ahead was abandoned (the ingester left the walk): raised on the worker, never surfaces."""


@dataclass(frozen=True)
class FetchedRange:
    """One eth_getLogs range, fetched ahead: its headers, and its logs cut into sub-chunks being decoded."""

    lo: int
    hi: int
    headers: dict[int, BlockHeader]
    parts: list[tuple[int, int, list[RawLog], Future[PreparedChunk]]]
    near_head: bool
    # Fetched while an earlier range was being written, so possibly older than that write.
    overlapped: bool


@dataclass(frozen=True)
class ContractSpec:
    address: str
    kind: str  # "service_manager" or "registry"
    start_block: int

    @property
    def topics(self) -> list[str]:
        names = SERVICE_MANAGER_EVENTS if self.kind == "service_manager" else REGISTRY_EVENTS
        return [TOPICS[name] for name in names]


@dataclass(frozen=True)
class IngestConfig:
    chain_id: int
    contracts: Sequence[ContractSpec]
    confirmations: int = 2
    blocks_kept: int = 1024
    initial_range: int = 2000
    max_range: int = 50_000
    # Logs per eth_getLogs range: the span follows the density so that each range holds about this many.
    range_logs: int = 2000


@dataclass
class SyncReport:
    head: int = 0
    target: int = 0
    events: int = 0
    batches_created: int = 0
    batches_verified: int = 0
    reorgs: int = 0
    chunks: int = 0
    cursors: dict[str, int] = field(default_factory=dict)


class Ingester:
    """Catch the ledger up to the confirmed head. Not thread-safe; one active ingester per chain (advisory lock)."""

    def __init__(self, *, client: ChainClient, config: IngestConfig) -> None:
        self.client = client
        self.config = config
        self.windows = {
            c.address: AdaptiveRange(
                initial=config.initial_range, maximum=config.max_range, target_logs=config.range_logs
            )
            for c in config.contracts
        }
        self.genesis_hash: str | None = None
        self._prefetch: ChainClient | None = None
        self._prefetch_stop = threading.Event()

    def check_chain_identity(self) -> str:
        """The node's genesis hash; raises ChainChangedError when the ledger was built from another chain."""
        if self.genesis_hash is None:
            genesis = self.client.get_block(0)
            if genesis is None:
                raise ChainChangedError("the node has no genesis block")
            recorded = set(
                IngestCursor.objects.filter(chain_id=self.config.chain_id)
                .exclude(genesis_hash="")
                .values_list("genesis_hash", flat=True)
            )
            if recorded - {genesis.hash}:
                detail = (
                    f"the node serves chain {self.config.chain_id} with genesis {genesis.hash}, but the ledger was "
                    f"built from genesis {sorted(recorded)[0]}; if the old chain is gone for good (a restarted "
                    "devnet), run `python manage.py ingest --reset`"
                )
                IngestIncident.objects.create(
                    chain_id=self.config.chain_id, kind=IngestIncidentKind.CHAIN_CHANGED, detail=detail
                )
                logger.error("CHAIN CHANGED: %s", detail)
                raise ChainChangedError(detail)
            self.genesis_hash = genesis.hash
        return self.genesis_hash

    # -- cursors ---------------------------------------------------------------------------------

    def _cursor(self, spec: ContractSpec) -> IngestCursor:
        cursor = IngestCursor.objects.filter(chain_id=self.config.chain_id, address=spec.address).first()
        if cursor is not None:
            return cursor
        start = max(spec.start_block - 1, -1)
        header = self.client.get_block(start) if start >= 0 else None
        if header is not None:
            self._remember_blocks(headers=[header], logs=[])
        cursor, _ = IngestCursor.objects.get_or_create(
            chain_id=self.config.chain_id,
            address=spec.address,
            defaults={
                "block_number": start,
                "block_hash": header.hash if header else ZERO_HASH,
                "genesis_hash": self.check_chain_identity(),
            },
        )
        return cursor

    # -- the loop --------------------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """Ingest every contract up to head - confirmations; returns what was done."""
        self.check_chain_identity()
        head = self.client.block_number()
        target = head - self.config.confirmations
        report = SyncReport(head=head, target=target)
        for spec in self.config.contracts:
            self._sync_contract(spec=spec, head=head, target=target, report=report)
        self._prune_blocks(head=head)
        return report

    def _sync_contract(self, *, spec: ContractSpec, head: int, target: int, report: SyncReport) -> None:
        cursor = self._cursor(spec)
        if self._repair_if_forked(spec=spec, cursor=cursor):
            report.reorgs += 1
            cursor.refresh_from_db()
        races = 0
        while cursor.block_number < target:
            try:
                with self._prefetching(
                    spec=spec, start=cursor.block_number + 1, target=target, head=head
                ) as ranges:
                    for fetched in ranges:
                        self._commit_range(spec=spec, cursor=cursor, fetched=fetched, report=report)
            except ChunkRaced as exc:
                # Whatever was fetched ahead is gone with the prefetch: the walk restarts at the cursor.
                races += 1
                if races > 10:
                    raise
                logger.warning("ingest %s: %s; checking for a reorg", spec.address, exc)
                if self._repair_if_forked(spec=spec, cursor=cursor):
                    report.reorgs += 1
                cursor.refresh_from_db()
                continue
        report.cursors[spec.address] = cursor.block_number

    # -- fetching ahead --------------------------------------------------------------------------

    @contextmanager
    def _prefetching(
        self, *, spec: ContractSpec, start: int, target: int, head: int
    ) -> Iterator[Iterator[FetchedRange]]:
        """The ranges from ``start`` to ``target``, each fetched (logs, headers) on one worker thread while the
        caller writes the one before, and decoded on another as soon as it is fetched: fetching (waiting for the
        node), decoding (Python) and writing (waiting for Postgres) overlap. The threads are gone when the block
        exits, however it exits.

        The workers never touch the database. Their errors (RPC errors, a ChunkRaced) surface in the caller's
        thread, where the range would have been fetched without them.
        """
        client = self._prefetch_client()
        walk = fetch_logs(
            client,
            addresses=[spec.address],
            topics=[spec.topics],
            from_block=start,
            to_block=target,
            window=self.windows[spec.address],
        )
        self._prefetch_stop.clear()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-prefetch")
        decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-decode")

        def fetch(*, overlapped: bool) -> Future[FetchedRange | None]:
            return pool.submit(
                self._fetch_range, client=client, walk=walk, head=head, decoder=decoder, overlapped=overlapped
            )

        def ranges() -> Iterator[FetchedRange]:
            future = fetch(overlapped=False)
            while (fetched := future.result()) is not None:
                # The next range's eth_getLogs runs while this one is decoded and written.
                future = fetch(overlapped=True)
                yield fetched

        try:
            yield ranges()
        finally:
            # Abandon a fetch under way (its retries stop sleeping), wait for the thread, then close the walk.
            self._prefetch_stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            decoder.shutdown(wait=True, cancel_futures=True)
            walk.close()

    def _prefetch_client(self) -> ChainClient:
        """The worker's own client (a ChainClient is not thread-safe), kept across syncs for its connection."""
        if self._prefetch is None:
            self._prefetch = self.client.clone(sleep=self._prefetch_sleep)
        return self._prefetch

    def _prefetch_sleep(self, delay: float) -> None:
        if self._prefetch_stop.wait(delay):
            raise PrefetchStopped("the ingester stopped fetching ahead")

    def _fetch_range(
        self,
        *,
        client: ChainClient,
        walk: Iterator[tuple[int, int, list[RawLog]]],
        head: int,
        decoder: ThreadPoolExecutor,
        overlapped: bool,
    ) -> FetchedRange | None:
        """Fetch the walk's next range and its headers, and hand its sub-chunks to the decoder (runs on the
        fetching worker)."""
        item = next(walk, None)
        if item is None:
            return None
        lo, hi, logs = item
        parts = split_logs(lo=lo, hi=hi, logs=logs, max_logs=SUBCHUNK_LOGS)
        near_head = hi > head - self.config.blocks_kept
        log_blocks = {log.block_number for log in logs} if near_head else set()
        wanted = sorted({lo, hi, *log_blocks, *(part_hi for _, part_hi, _ in parts)})
        headers = {h.number: h for h in client.get_blocks(wanted)}
        if any(number not in headers for number in wanted):
            raise ChunkRaced(f"blocks {lo}-{hi} are not all on the node any more")
        for log in logs:
            header = headers.get(log.block_number)
            if header is not None and header.hash != log.block_hash:
                raise ChunkRaced(
                    f"log in block {log.block_number} belongs to a block that is no longer canonical"
                )
        return FetchedRange(
            lo=lo,
            hi=hi,
            headers=headers,
            parts=[
                (part_lo, part_hi, part_logs, decoder.submit(chunk_prepare, part_logs))
                for part_lo, part_hi, part_logs in parts
            ],
            near_head=near_head,
            overlapped=overlapped,
        )

    # -- writing ---------------------------------------------------------------------------------

    def _commit_range(
        self, *, spec: ContractSpec, cursor: IngestCursor, fetched: FetchedRange, report: SyncReport
    ) -> None:
        """Check a fetched range against the canonical chain and the cursor, then commit it in sub-chunks.

        Sub-chunks (at most SUBCHUNK_LOGS logs, cut at block boundaries) each move the cursor in their own
        transaction.
        """
        lo, hi, headers = fetched.lo, fetched.hi, fetched.headers
        if lo > 0 and cursor.block_number == lo - 1 and headers[lo].parent_hash != cursor.block_hash:
            raise ChunkRaced(f"block {lo}'s parent is not the cursor's block {cursor.block_number}")
        if fetched.overlapped and fetched.near_head:
            # Fetched while the range before was written: a reorg since then changed the hash of its last
            # block (every block's hash covers its ancestors'), so one header says whether all of it still holds.
            canonical = self.client.get_block(hi)
            if canonical is None or canonical.hash != headers[hi].hash:
                raise ChunkRaced(f"blocks {lo}-{hi} left the canonical chain after they were fetched")
        for part_lo, part_hi, part_logs, prepared in fetched.parts:
            chunk = prepared.result()
            end_hash = headers[part_hi].hash
            with transaction.atomic():
                # The chain is this data's source: a crash may lose the last chunks committed (their WAL flush
                # not waited for), but never half of one, and the cursor goes back with them, so they are fetched
                # again. Whatever later commits after reading them (a signature for a new batch) flushes them
                # with its own WAL. A backfill stops paying a disk flush per chunk.
                with connection.cursor() as db:
                    db.execute("SET LOCAL synchronous_commit TO off")
                # Conditional move: only from where we read the cursor, so two ingesters never both advance it.
                moved = IngestCursor.objects.filter(
                    pk=cursor.pk, block_number=cursor.block_number, block_hash=cursor.block_hash
                ).update(block_number=part_hi, block_hash=end_hash)
                if moved != 1:
                    raise ChunkRaced("the cursor moved under this ingester (another one is running?)")
                summary = ledger_apply_rows(
                    chain_id=self.config.chain_id,
                    rows=chunk.rows,
                    undecodable=chunk.undecodable,
                    staged=chunk.staged,
                )
                self._remember_blocks(
                    headers=[h for n, h in headers.items() if part_lo <= n <= part_hi],
                    logs=[] if fetched.near_head else part_logs,
                )
            cursor.block_number = part_hi
            cursor.block_hash = end_hash
            report.events += summary.events
            report.batches_created += summary.batches_created
            report.batches_verified += summary.batches_verified
            report.chunks += 1
            if summary.events:
                logger.info(
                    "ingest %s: blocks %d-%d, %d events (%d batches created, %d verified)",
                    spec.address,
                    part_lo,
                    part_hi,
                    summary.events,
                    summary.batches_created,
                    summary.batches_verified,
                )

    def _remember_blocks(self, *, headers: list[BlockHeader], logs: list[RawLog]) -> None:
        """Keep the blocks this chunk crossed, to find a fork point later."""
        rows: dict[str, tuple[int, str, str, int | None]] = {
            h.hash: (h.number, h.hash, h.parent_hash, h.timestamp) for h in headers
        }
        for log in logs:
            rows.setdefault(log.block_hash, (log.block_number, log.block_hash, "", None))
        blocks_remember(chain_id=self.config.chain_id, blocks=list(rows.values()))

    def _prune_blocks(self, *, head: int) -> None:
        keep_from = head - self.config.blocks_kept
        cursor_hashes = list(
            IngestCursor.objects.filter(chain_id=self.config.chain_id).values_list("block_hash", flat=True)
        )
        Block.objects.filter(chain_id=self.config.chain_id, number__lt=keep_from).exclude(
            hash__in=cursor_hashes
        ).delete()

    # -- reorgs ----------------------------------------------------------------------------------

    def _repair_if_forked(self, *, spec: ContractSpec, cursor: IngestCursor) -> bool:
        """If the cursor's block left the canonical chain, roll back to the fork point. True when it did."""
        if cursor.block_number < 0:
            return False
        canonical = self.client.get_block(cursor.block_number)
        if canonical is not None and canonical.hash == cursor.block_hash:
            return False
        ancestor = self._fork_point(cursor=cursor)
        depth = cursor.block_number - ancestor.number
        with transaction.atomic():
            touched = ledger_rollback(
                chain_id=self.config.chain_id, address=spec.address, above_block=ancestor.number
            )
            Block.objects.filter(chain_id=self.config.chain_id, number__gt=ancestor.number).exclude(
                hash__in=self._canonical_hashes_above(ancestor.number, cursor.block_number)
            ).update(removed=True)
            moved = IngestCursor.objects.filter(
                pk=cursor.pk, block_number=cursor.block_number, block_hash=cursor.block_hash
            ).update(block_number=ancestor.number, block_hash=ancestor.hash)
            if moved != 1:
                raise ChunkRaced("the cursor moved under this ingester during a rollback")
            IngestIncident.objects.create(
                chain_id=self.config.chain_id,
                kind=IngestIncidentKind.REORG,
                address=spec.address,
                block_number=ancestor.number + 1,
                depth=depth,
                detail=f"fork above block {ancestor.number} ({ancestor.hash}); rolled back {depth} blocks, "
                f"rebuilt {len(touched)} subjects",
            )
        logger.warning(
            "reorg on %s: fork above block %d, rolled back %d blocks and %d subjects",
            spec.address,
            ancestor.number,
            depth,
            len(touched),
        )
        return True

    def _canonical_hashes_above(self, low: int, high: int) -> list[str]:
        if high <= low:
            return []
        numbers = list(range(low + 1, min(high, low + self.config.blocks_kept) + 1))
        return [h.hash for h in self.client.get_blocks(numbers)]

    def _fork_point(self, *, cursor: IngestCursor) -> Block:
        """The newest block at or below the cursor that is still canonical.

        Only blocks with logs and chunk ends are kept, so a kept block's parent (its header's parent hash) is
        checked too: without it a one-block reorg after an empty block would roll back two.
        """
        kept = list(
            Block.objects.filter(
                chain_id=self.config.chain_id, number__lte=cursor.block_number, removed=False
            ).order_by("-number")[: self.config.blocks_kept]
        )
        by_number: dict[int, list[Block]] = {}
        for block in kept:
            by_number.setdefault(block.number, []).append(block)
        numbers = sorted(by_number, reverse=True)
        for start in range(0, len(numbers), 100):
            chunk = numbers[start : start + 100]
            parents = {n - 1 for n in chunk if n > 0 and n - 1 not in by_number}
            canonical = {h.number: h.hash for h in self.client.get_blocks(sorted({*chunk, *parents}))}
            for number in chunk:
                for block in by_number[number]:
                    if canonical.get(number) == block.hash:
                        return block
                for block in by_number[number]:
                    if (
                        block.parent_hash
                        and number - 1 in parents
                        and canonical.get(number - 1) == block.parent_hash
                    ):
                        return Block(chain_id=self.config.chain_id, number=number - 1, hash=block.parent_hash)
        lowest = numbers[-1] if numbers else None
        detail = (
            f"the chain forked below every kept block (lowest kept: {lowest}, cursor at {cursor.block_number} "
            f"{cursor.block_hash}); ingest stopped for {cursor.address}: reset the cursor after checking the chain"
        )
        IngestIncident.objects.create(
            chain_id=self.config.chain_id,
            kind=IngestIncidentKind.DEEP_REORG,
            address=cursor.address,
            block_number=cursor.block_number,
            depth=None,
            detail=detail,
        )
        logger.error("DEEP REORG: %s", detail)
        raise DeepReorgError(detail)
