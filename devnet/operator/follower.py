"""Follows NewBatchV3 on the service manager from the head at its start; a chain outage is never fatal."""

from __future__ import annotations

import logging
import time

from chain import AdaptiveRange, ChainClient, fetch_logs
from chain.abi import TOPICS, DecodeError, decode_new_batch_v3
from controlplane.loops import Loop, loop_run
from devnet.operator.checker import Checker
from devnet.operator.common import (
    BatchTask,
    _describe,
)

logger = logging.getLogger("devnet.operator")


class Follower(Checker):
    """Follows NewBatchV3 on the service manager from the head at its start; a chain outage is never fatal."""

    def _follow_loop(self) -> None:
        client = ChainClient(self.rpc_url, timeout=3.0, max_attempts=2, backoff_base=0.1, backoff_cap=0.5)
        # The chain stage's adaptive range: a node that refuses a range gets smaller ones, never skipped blocks.
        window = AdaptiveRange(
            initial=self.timing.max_blocks_per_poll, maximum=self.timing.max_blocks_per_poll
        )
        # Polled at the same pace whatever happens: the step counts and logs its own failures (health and
        # metrics read them), so the runner never backs off.
        loop = Loop(
            name=f"{self.name}-follower",
            step=lambda: self._poll(client, window),
            interval=self.timing.poll_interval,
            infra=False,
        )
        try:
            loop_run(loop, stopping=self._stop)
        finally:
            client.close()

    def _poll(self, client: ChainClient, window: AdaptiveRange) -> None:
        try:
            self._poll_once(client, window)
        except Exception as exc:  # RpcError or anything else: never fatal: log, count, poll again
            self._poll_failed(exc)
        else:
            self._poll_succeeded()

    def _poll_once(self, client: ChainClient, window: AdaptiveRange) -> None:
        head = client.block_number()
        with self._lock:
            self._head = head
        if self._next_block is None:
            self._next_block = head + 1
            self._first_block = head + 1
            logger.info("%s: following NewBatchV3 from block %d", self.name, head + 1)
        elif head + 1 < self._next_block:
            logger.warning(
                "%s: chain head went back from %d to %d (restart or reorg); following from %d",
                self.name,
                self._next_block - 1,
                head,
                head + 1,
            )
            self._next_block = head + 1
        if self._next_block > head:
            return
        for _, to_block, logs in fetch_logs(
            client,
            addresses=[self.service_manager],
            topics=[TOPICS["NewBatchV3"]],
            from_block=self._next_block,
            to_block=head,
            window=window,
        ):
            for log in logs:
                if log.removed:
                    continue
                try:
                    event = decode_new_batch_v3(log.topics, log.data)
                except DecodeError as exc:
                    logger.warning(
                        "%s: undecodable NewBatchV3 in block %d: %s", self.name, log.block_number, exc
                    )
                    continue
                self.submit(
                    BatchTask(
                        root=str(event["batchMerkleRoot"]).lower(),
                        sender=str(event["senderAddress"]).lower(),
                        pointer=str(event["batchDataPointer"]),
                        source="chain",
                        block=log.block_number,
                    )
                )
            self._next_block = to_block + 1
            if self._stop.is_set():
                return

    def _poll_succeeded(self) -> None:
        with self._lock:
            failures = self._poll_failures_in_row
            self._poll_failures_in_row = 0
            self._last_poll_ok = time.monotonic()
            self._counters.chain_polls += 1
        if failures:
            logger.info("%s: chain reachable again after %d failed polls", self.name, failures)

    def _poll_failed(self, exc: BaseException) -> None:
        with self._lock:
            self._poll_failures_in_row += 1
            failures = self._poll_failures_in_row
            self._counters.chain_polls += 1
            self._counters.chain_poll_failures += 1
        # First failure of an outage, then every 20th: a long outage must not flood the log.
        if failures == 1 or failures % 20 == 0:
            logger.warning(
                "%s: chain poll failed (%s: %s); %d in a row, retrying every %.1fs",
                self.name,
                type(exc).__name__,
                _describe(exc),
                failures,
                self.timing.poll_interval,
            )
