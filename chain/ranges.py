"""Walk a block range with eth_getLogs in chunks whose size adapts to what the provider accepts."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Sequence

from chain.client import ChainClient, RawLog
from chain.errors import NodeUnavailable, RpcError

logger = logging.getLogger("chain")

# The first range of a window sized by log count asks for this share of ``target_logs`` blocks.
FIRST_RANGE_SHARE = 64


class AdaptiveRange:
    """Chunk size for eth_getLogs: grows slowly on success, halves on refusal (AIMD-like).

    Growing by a factor (not +1) lets a window that shrank to 10 recover to thousands in a few dozen
    requests; the slow factor keeps it from bouncing straight back into the provider's limit.

    With ``target_logs``, the span also follows the log density: each range asks for about that many logs,
    judged from the last range (a dense stretch gets short ranges, an empty one long ones). The AIMD size is
    then the ``limit`` the span never exceeds, so a provider's refusals still bound it. Such a window starts
    at ``target_logs // FIRST_RANGE_SHARE`` blocks and at most quadruples per range ("slow start"): the density
    is unknown until a range was seen. A first range too small costs a few short requests on a sparse chain (a
    log a block reaches a full range in four); one too big, on a dense stretch, is one long fetch that nothing
    overlaps, and can pass a provider's cap on logs per response.
    """

    def __init__(
        self,
        *,
        initial: int = 2000,
        minimum: int = 1,
        maximum: int = 100_000,
        grow_factor: float = 1.25,
        shrink_factor: float = 0.5,
        target_logs: int | None = None,
        max_growth: float = 4.0,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if grow_factor <= 1.0 or not 0.0 < shrink_factor < 1.0:
            raise ValueError("need grow_factor > 1 and 0 < shrink_factor < 1")
        if target_logs is not None and target_logs < 1:
            raise ValueError(f"need target_logs >= 1, got {target_logs}")
        if max_growth <= 1.0:
            raise ValueError("need max_growth > 1")
        self.minimum = minimum
        self.maximum = maximum
        self.grow_factor = grow_factor
        self.shrink_factor = shrink_factor
        self.target_logs = target_logs
        self.max_growth = max_growth
        self.limit = min(maximum, max(minimum, initial))
        # Until a range has shown the density, probe it with a short first range (not one block: a short backfill
        # would then be cut into many chunks, each announced batch by batch instead of as one summary).
        first = None if target_logs is None else target_logs // FIRST_RANGE_SHARE
        self.size = self.limit if first is None else max(minimum, min(self.limit, first))

    @property
    def at_minimum(self) -> bool:
        return self.size <= self.minimum

    def success(self, *, span: int | None = None, logs: int | None = None, spread: int | None = None) -> None:
        """A range of ``span`` blocks (default: ``size``) came back holding ``logs`` logs, spread over its last
        ``spread`` blocks (from the first log on: where a contract starts emitting mid-range, the density is
        that of the blocks after, not of the whole range)."""
        used = self.size if span is None else span
        # Grow from what the provider just accepted, not from a limit a run of short ranges never tried.
        grown = min(self.maximum, max(used + 1, math.floor(used * self.grow_factor)))
        self.limit = max(self.limit, grown)
        if self.target_logs is None or logs is None:
            self.size = self.limit
            return
        wanted = (spread or used) * self.target_logs // max(logs, 1)
        self.size = max(self.minimum, min(self.limit, wanted, math.floor(used * self.max_growth)))

    def failure(self) -> None:
        self.size = max(self.minimum, min(self.size - 1, math.floor(self.size * self.shrink_factor)))
        self.limit = self.size

    def __repr__(self) -> str:
        return (
            f"AdaptiveRange(size={self.size}, limit={self.limit}, minimum={self.minimum}, "
            f"maximum={self.maximum}, target_logs={self.target_logs})"
        )


def fetch_logs(
    client: ChainClient,
    *,
    addresses: Sequence[str],
    topics: Sequence[Sequence[str] | str | None] | None,
    from_block: int,
    to_block: int,
    window: AdaptiveRange,
    on_chunk: Callable[[int, int, list[RawLog]], None] | None = None,
) -> Generator[tuple[int, int, list[RawLog]], None, None]:
    """Yield ``(chunk_from, chunk_to, logs)`` covering [from_block, to_block] in order, without gaps.

    A chunk the provider refuses (``RangeTooLarge``, or any other ``RpcError`` left after the client's own
    retries: a heavy range can also show up as 5xx or timeouts) is retried from the same start with a smaller
    window. A chunk that still fails at the window's minimum re-raises: blocks are never skipped. A node that
    cannot be reached at all (``NodeUnavailable``) re-raises at once, since a smaller range would not help.

    The generator is lazy: a caller that commits each chunk together with its cursor resumes exactly there.
    """
    if from_block < 0 or to_block < from_block:
        raise ValueError(f"bad block range {from_block}-{to_block}")
    start = from_block
    while start <= to_block:
        end = min(to_block, start + window.size - 1)
        try:
            logs = client.get_logs(addresses=addresses, topics=topics, from_block=start, to_block=end)
        except NodeUnavailable:
            raise
        except RpcError as exc:
            span = end - start + 1
            if span <= window.minimum:
                raise
            # Shrink until the next chunk is actually smaller (the last chunk may already be short).
            window.failure()
            while window.size >= span and not window.at_minimum:
                window.failure()
            logger.warning(
                "eth_getLogs %d-%d refused (%s); range shrinks to %d", start, end, exc.describe(), window.size
            )
            continue
        window.success(
            span=end - start + 1, logs=len(logs), spread=end - logs[0].block_number + 1 if logs else None
        )
        if on_chunk is not None:
            on_chunk(start, end, logs)
        yield start, end, logs
        start = end + 1
