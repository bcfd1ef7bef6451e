"""Walk a block range with eth_getLogs in chunks whose size adapts to what the provider accepts."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence

from chain.client import ChainClient, NodeUnavailable, RawLog, RpcError

logger = logging.getLogger("chain")


class AdaptiveRange:
    """Chunk size for eth_getLogs: grows slowly on success, halves on refusal (AIMD-like).

    Growing by a factor (not +1) lets a window that shrank to 10 recover to thousands in a few dozen
    requests; the slow factor keeps it from bouncing straight back into the provider's limit.
    """

    def __init__(
        self,
        *,
        initial: int = 2000,
        minimum: int = 1,
        maximum: int = 100_000,
        grow_factor: float = 1.25,
        shrink_factor: float = 0.5,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if grow_factor <= 1.0 or not 0.0 < shrink_factor < 1.0:
            raise ValueError("need grow_factor > 1 and 0 < shrink_factor < 1")
        self.minimum = minimum
        self.maximum = maximum
        self.grow_factor = grow_factor
        self.shrink_factor = shrink_factor
        self.size = min(maximum, max(minimum, initial))

    @property
    def at_minimum(self) -> bool:
        return self.size <= self.minimum

    def success(self) -> None:
        self.size = min(self.maximum, max(self.size + 1, math.floor(self.size * self.grow_factor)))

    def failure(self) -> None:
        self.size = max(self.minimum, min(self.size - 1, math.floor(self.size * self.shrink_factor)))

    def __repr__(self) -> str:
        return f"AdaptiveRange(size={self.size}, minimum={self.minimum}, maximum={self.maximum})"


def fetch_logs(
    client: ChainClient,
    *,
    addresses: Sequence[str],
    topics: Sequence[Sequence[str] | str | None] | None,
    from_block: int,
    to_block: int,
    window: AdaptiveRange,
    on_chunk: Callable[[int, int, list[RawLog]], None] | None = None,
) -> Iterator[tuple[int, int, list[RawLog]]]:
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
        window.success()
        if on_chunk is not None:
            on_chunk(start, end, logs)
        yield start, end, logs
        start = end + 1
