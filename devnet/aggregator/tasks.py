"""The task store: tasks learned from NewBatchV3 (followed from the chain head at start) or announced by
the control plane, expired after their window."""

from __future__ import annotations

import logging
import time
from typing import Any

from chain import ChainClient, RawLog, RpcError, fetch_logs
from chain.abi import DecodeError, decode_batch_verified, decode_new_batch_v3
from controlplane.loops import Loop, loop_run
from devnet.aggregator.base import AggregatorBase
from devnet.aggregator.common import (
    _BATCH_VERIFIED,
    _NEW_BATCH_V3,
    MIN_TOMBSTONE_SECONDS,
    Task,
    _identifier,
)

logger = logging.getLogger("devnet.aggregator")


class TaskStore(AggregatorBase):
    """Tasks in memory only (as upstream): learned, followed to their response, expired, forgotten."""

    def task_add(
        self,
        *,
        root: str,
        sender: str,
        task_created_block: int,
        source: str,
        total_stake: int | None = None,
    ) -> tuple[Task, bool]:
        """The task for (root, sender), created (or revived after expiry) when needed; (task, created)."""
        identifier = _identifier(root, sender)
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None and not task.expired:
                if task.total_stake is None:
                    task.total_stake = total_stake
                return task, False
            task = Task(
                identifier=identifier,
                root=root,
                sender=sender,
                task_created_block=task_created_block,
                created_at=time.time(),
                total_stake=total_stake,
            )
            self._tasks[identifier] = task
        logger.info("task %s (batch %s, block %d) from %s", identifier, root, task_created_block, source)
        return task, True

    def _mark_responded(self, identifier: str, tx_hash: str | None = None) -> None:
        with self._lock:
            task = self._tasks.get(identifier)
            if task is None:
                return
            # The follower may see BatchVerified before the submitter gets its receipt: keep the hash.
            task.tx_hash = tx_hash or task.tx_hash
            if not task.responded:
                task.responded = True
                task.expired = False
                task.finished_at = time.time()

    def tasks_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            tasks = sorted(self._tasks.values(), key=lambda t: t.created_at)
            return [task.as_json() for task in tasks]

    def health(self) -> dict[str, Any]:
        return {"bootId": self.boot_id, "startedAt": self.started_at, "tasks": self.tasks_snapshot()}

    def _follow_loop(self) -> None:
        client = self._client()
        loop = Loop(
            name="aggregator-follow",
            step=lambda: self.follow_once(client),
            interval=self.config.poll_interval,
            outages={"chain": (RpcError, DecodeError)},
            backoff_cap=self.config.poll_interval,
            infra=False,
        )
        try:
            loop_run(loop, stopping=self._stop)
        finally:
            client.close()

    def follow_once(self, client: ChainClient) -> None:
        assert self.next_block is not None
        head = client.block_number()
        if head < self.next_block:
            return
        for _, to_block, logs in fetch_logs(
            client,
            addresses=[self.config.service_manager],
            topics=[[_NEW_BATCH_V3, _BATCH_VERIFIED]],
            from_block=self.next_block,
            to_block=head,
            window=self._window,
        ):
            for log in logs:
                if not log.removed:
                    self._follow_log(log)
            self.next_block = to_block + 1

    def _follow_log(self, log: RawLog) -> None:
        if log.topics[0] == _NEW_BATCH_V3:
            event = decode_new_batch_v3(log.topics, log.data)
            block = int(event["taskCreatedBlock"])
            # Looked up before the task is published, so /health never shows a task without its total; best
            # effort: a signature fetches it again if this failed.
            total: int | None = None
            try:
                total = self._total_stake(block)
            except Exception as exc:
                logger.warning("total stake at block %d unknown for now (%s)", block, exc)
            self.task_add(
                root=event["batchMerkleRoot"],
                sender=event["senderAddress"],
                task_created_block=block,
                source="NewBatchV3",
                total_stake=total,
            )
        else:
            event = decode_batch_verified(log.topics, log.data)
            self._mark_responded(_identifier(event["batchMerkleRoot"], event["senderAddress"]))

    def _expire_loop(self) -> None:
        tick = max(0.05, min(1.0, self.config.task_window / 10))
        loop = Loop(
            name="aggregator-expire",
            step=lambda: self.expire_due(now=time.time()),
            interval=tick,
            infra=False,
        )
        loop_run(loop, stopping=self._stop)

    def _expire_if_due(self, task: Task, now: float) -> bool:
        """Expire ``task`` if its window is over (call with the lock held); True if it is expired."""
        if task.expired:
            return True
        if task.responded or task.submitting or now - task.created_at < self.config.task_window:
            return False
        held = len(task.signatures)
        missing = "a response" if task.has_quorum() else "quorum"
        task.expired = True
        task.finished_at = now
        task.signatures.clear()
        task.stakes.clear()
        logger.warning(
            "task %s expired after %g s without %s: lost (batch %s, %d signature(s) dropped)",
            task.identifier,
            self.config.task_window,
            missing,
            task.root,
            held,
        )
        return True

    def expire_due(self, *, now: float) -> None:
        tombstone = max(MIN_TOMBSTONE_SECONDS, 10 * self.config.task_window)
        resubmit: list[str] = []
        with self._lock:
            for identifier, task in list(self._tasks.items()):
                self._expire_if_due(task, now)
                if task.finished_at is not None and now - task.finished_at > tombstone:
                    del self._tasks[identifier]
                elif (
                    task.resubmit_at is not None
                    and now >= task.resubmit_at
                    and not (task.responded or task.expired or task.submitting)
                ):
                    task.resubmit_at = None
                    task.submitting = True
                    resubmit.append(identifier)
        for identifier in resubmit:
            self._jobs.put(identifier)
