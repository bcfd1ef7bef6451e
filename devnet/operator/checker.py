"""Downloads each batch, checks its Merkle root and every proof, and signs only when all of them hold."""

from __future__ import annotations

import json
import logging
import time

import requests

from devnet.batches import BatchFormatError, check_batch, parse_batch
from devnet.contracts import batch_identifier
from devnet.operator.common import (
    REFUSALS_KEPT,
    BatchTask,
    _Delivery,
    _describe,
    _DownloadError,
    _is_http_url,
)
from devnet.operator.sender import Sender

logger = logging.getLogger("devnet.operator")


class Checker(Sender):
    """Downloads each batch, checks its Merkle root and every proof, and signs only when all of them hold."""

    def submit(self, task: BatchTask) -> bool:
        """Queue a batch for checking; False when it is being processed or was signed in this process."""
        with self._lock:
            if task.key in self._batches:
                return False
            self._batches[task.key] = "processing"
            self._counters.batches_seen += 1
        logger.info(
            "%s: batch %s seen (%s%s)",
            self.name,
            task.root,
            task.source,
            f", block {task.block}" if task.block is not None else "",
        )
        self._work.put(task)
        return True

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            task = self._work.get()
            if task is None or self._stop.is_set():
                return
            try:
                self._process(task)
            except Exception:
                logger.exception("%s: batch %s: unexpected failure", self.name, task.root)
                self._refuse(task, "internal error", good=False)

    def _process(self, task: BatchTask) -> None:
        try:
            raw = self._download(task.pointer)
        except _DownloadError as exc:
            with self._lock:
                self._counters.batch_download_failures += 1
            self._refuse(task, f"download failed: {exc.reason}", good=False)
            return
        try:
            batch = parse_batch(raw)
        except BatchFormatError as exc:
            self._refuse(task, f"malformed batch: {exc}", good=True)
            return
        check = check_batch(batch=batch, expected_root=bytes.fromhex(task.root[2:]))
        if not check.root_matches:
            self._refuse(
                task, f"Merkle root mismatch: the data computes 0x{batch.merkle_root.hex()}", good=True
            )
            return
        if check.invalid_proofs:
            shown = ", ".join(str(i) for i in check.invalid_proofs[:10])
            self._refuse(
                task,
                f"{len(check.invalid_proofs)} of {len(batch.proofs)} proofs invalid (index {shown})",
                good=True,
            )
            return
        identifier = batch_identifier(batch_merkle_root=bytes.fromhex(task.root[2:]), sender=task.sender)
        signature = self._keypair.sign(identifier)
        response = {
            "batchMerkleRoot": task.root,
            "senderAddress": task.sender,
            "batchIdentifierHash": "0x" + identifier.hex(),
            "blsSignature": signature.to_hex(),
            "operatorId": self.operator_id,
        }
        with self._lock:
            self._batches[task.key] = "signed"
            self._counters.batches_signed += 1
        logger.info("%s: batch %s signed (%d proofs valid)", self.name, task.root, len(batch.proofs))
        self._enqueue(
            _Delivery(
                task=task,
                body=json.dumps(response, separators=(",", ":")).encode(),
                created=time.monotonic(),
            ),
            delay=0.0,
        )

    def _refuse(self, task: BatchTask, reason: str, *, good: bool) -> None:
        """Not signed. ``good``: refusing was the right answer (bad batch), not a failure of this node."""
        with self._lock:
            self._batches.pop(task.key, None)  # a later control request may try again
            if good:
                self._refused[task.key] = reason
                while len(self._refused) > REFUSALS_KEPT:
                    self._refused.pop(next(iter(self._refused)))
            self._counters.batches_refused += 1
            self._outcomes.append(good)
        logger.warning("%s: batch %s refused (%s)", self.name, task.root, reason)

    def _download(self, url: str) -> bytes:
        timing = self.timing
        last: _DownloadError | None = None
        for attempt in range(1, timing.download_attempts + 1):
            try:
                return self._download_once(url)
            except _DownloadError as exc:
                last = exc
                if not exc.retryable or attempt >= timing.download_attempts:
                    break
                logger.info(
                    "%s: download of %s failed (%s); attempt %d/%d",
                    self.name,
                    url,
                    exc.reason,
                    attempt,
                    timing.download_attempts,
                )
                if self._stop.wait(timing.download_retry_interval):
                    break
        assert last is not None
        raise last

    def _download_once(self, url: str) -> bytes:
        timing = self.timing
        if not _is_http_url(url):
            raise _DownloadError(f"not an http(s) URL: {url[:100]!r}", retryable=False)
        deadline = time.monotonic() + timing.download_timeout
        try:
            with requests.get(url, stream=True, timeout=timing.download_timeout) as response:
                if response.status_code != 200:
                    raise _DownloadError(
                        f"HTTP {response.status_code}", retryable=response.status_code >= 500
                    )
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > timing.max_batch_bytes:
                    raise _DownloadError(
                        f"batch is {declared} bytes, over the {timing.max_batch_bytes} byte cap",
                        retryable=False,
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > timing.max_batch_bytes:
                        raise _DownloadError(
                            f"batch is over the {timing.max_batch_bytes} byte cap", retryable=False
                        )
                    if time.monotonic() > deadline:
                        raise _DownloadError(f"download took over {timing.download_timeout:g}s")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise _DownloadError(f"{type(exc).__name__}: {_describe(exc)}") from None
