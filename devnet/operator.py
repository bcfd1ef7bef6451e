"""The devnet's operator process: follows NewBatchV3, checks each batch, BLS-signs the valid ones, sends them.

One ``OperatorNode`` per operator of the devnet file. Its threads:

- a **follower** polls ``eth_getLogs`` on the service manager for NewBatchV3 from the chain head *at its start*
  (like upstream, an operator that was down misses what was created meanwhile); a chain outage is logged and
  retried, never fatal;
- a few **workers** download each batch from its ``batchDataPointer``, check the Merkle root and every proof,
  and sign ``batch_identifier(root, sender)`` only when all of them hold;
- a few **senders** deliver the signed responses (Aligned's JSON) from a due-time queue, so a slow or absent
  receiver never blocks the following or the checking. Normal mode posts to the control plane's intake and
  retries with capped exponential backoff until it is accepted (the control plane is the durable queue);
  ``direct`` mode posts to the aggregator with upstream's policy (10 tries, 10 s apart, then give up);
- an **HTTP server** with the EigenLayer node API (``/eigen/node``, ``/eigen/node/health``,
  ``/eigen/node/services``, ``/eigen/node/services/<id>/health``), Prometheus ``/metrics`` and the
  authenticated ``POST /control/verify`` through which the control plane drives catch-up.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import json
import logging
import queue
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import requests

from bls import KeyPair, keypair_from_secret
from chain import ChainClient, RangeTooLarge
from chain.abi import TOPICS, DecodeError, decode_new_batch_v3
from devnet.batches import BatchFormatError, check_batch, parse_batch
from devnet.contracts import batch_identifier
from devnet.state import DevnetStateError
from intake.parse import IntakeError

logger = logging.getLogger("devnet.operator")

NODE_VERSION = "0.1.0"
SPEC_VERSION = "v0.0.1"
AVS_NAME = "aligned-devnet"

CONTROL_PATH = "/control/verify"
CONTROL_MAX_BODY = 64 * 1024
CONTROL_MAX_BATCHES = 100
MAX_POINTER_LENGTH = 2048
MAX_BATCH_BYTES = 16 * 1024 * 1024
PERFORMANCE_WINDOW = 100
# Refusals remembered, oldest forgotten first (a forgotten one is simply checked, and refused, again).
REFUSALS_KEPT = 10_000
# 4xx answers from the control plane that mean "later", not "never".
RETRYABLE_4XX = frozenset({408, 429})

_ROOT = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SERVICE_HEALTH = re.compile(r"^/eigen/node/services/([^/]+)/health$")

HEALTHY, PARTIAL, UNHEALTHY = 200, 206, 503
SERVICES: dict[str, tuple[str, str]] = {
    "chain-follower": ("Chain follower", "Follows NewBatchV3 events of the service manager on the chain"),
    "batch-signer": (
        "Batch signer",
        "Downloads and checks batches, BLS-signs the valid ones and delivers the signed responses",
    ),
}


@dataclass(frozen=True)
class OperatorTiming:
    """Every interval and limit of an operator; tests shrink them."""

    poll_interval: float = 0.5
    max_blocks_per_poll: int = 1000
    # Sending in direct mode (upstream's policy): this many tries, this far apart, then give up.
    direct_retry_interval: float = 10.0
    direct_max_tries: int = 10
    # Sending to the control plane: capped exponential backoff, never giving up on a retryable failure.
    backoff_base: float = 0.5
    backoff_cap: float = 10.0
    send_timeout: float = 5.0
    download_timeout: float = 5.0
    download_attempts: int = 3
    download_retry_interval: float = 0.5
    max_batch_bytes: int = MAX_BATCH_BYTES
    workers: int = 4
    senders: int = 4
    # Health: degraded after this many failed chain polls in a row, unhealthy after this long without one.
    degraded_after_failures: int = 3
    unhealthy_after: float = 10.0
    # Health: the send queue is backing up with this many undelivered responses, or one this old.
    send_backlog_degraded: int = 10
    send_stale_after: float = 30.0
    stop_timeout: float = 3.0

    @classmethod
    def from_state(cls, state: dict[str, Any], **overrides: Any) -> OperatorTiming:
        values: dict[str, Any] = {
            "poll_interval": float(state.get("operator_poll_interval", 0.5)),
            "direct_retry_interval": float(state.get("direct_retry_interval", 10.0)),
            "direct_max_tries": int(state.get("direct_tries", 10)),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class BatchTask:
    """One batch to check: from a NewBatchV3 event or a control request. Hex is lowercase 0x."""

    root: str
    sender: str
    pointer: str
    source: str  # "chain" or "control"
    block: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.root, self.sender)


@dataclass
class _Delivery:
    task: BatchTask
    body: bytes
    created: float
    attempts: int = 0


@dataclass
class _Counters:
    batches_seen: int = 0
    batches_signed: int = 0
    batches_refused: int = 0
    batch_download_failures: int = 0
    responses_sent: int = 0
    responses_failed: int = 0
    responses_abandoned: int = 0
    chain_polls: int = 0
    chain_poll_failures: int = 0
    control_requests: int = 0
    control_batches_skipped: int = 0


@dataclass
class _ServiceHealth:
    status: str  # Up / Down / Initializing
    code: int  # 200 / 206 / 503
    reason: str = ""


class ControlRequestError(IntakeError):
    """A refused control request: the same ``{"error", "field"}`` answer as the intake's."""


class _DownloadError(Exception):
    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def parse_control_request(body: bytes) -> list[BatchTask]:
    """The batches of a ``POST /control/verify`` body; ControlRequestError names what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlRequestError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ControlRequestError("body must be a JSON object")
    batches = document.get("batches")
    if not isinstance(batches, list):
        raise ControlRequestError('"batches" must be a list', field="batches")
    if len(batches) > CONTROL_MAX_BATCHES:
        raise ControlRequestError(
            f"at most {CONTROL_MAX_BATCHES} batches per request (got {len(batches)})", field="batches"
        )
    tasks: list[BatchTask] = []
    for i, item in enumerate(batches):
        where = f"batches[{i}]"
        if not isinstance(item, dict):
            raise ControlRequestError(f"{where} must be an object", field=where)
        root = item.get("batchMerkleRoot")
        if not isinstance(root, str) or not _ROOT.match(root):
            raise ControlRequestError(
                f"{where}.batchMerkleRoot must be 0x and 64 hex digits", field=f"{where}.batchMerkleRoot"
            )
        sender = item.get("senderAddress")
        if not isinstance(sender, str) or not _ADDRESS.match(sender):
            raise ControlRequestError(
                f"{where}.senderAddress must be 0x and 40 hex digits", field=f"{where}.senderAddress"
            )
        pointer = item.get("batchDataPointer")
        if not isinstance(pointer, str) or not _is_http_url(pointer):
            raise ControlRequestError(
                f"{where}.batchDataPointer must be an http(s) URL of at most {MAX_POINTER_LENGTH} characters",
                field=f"{where}.batchDataPointer",
            )
        tasks.append(BatchTask(root=root.lower(), sender=sender.lower(), pointer=pointer, source="control"))
    return tasks


def _is_http_url(value: str) -> bool:
    if len(value) > MAX_POINTER_LENGTH:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class OperatorNode:
    """One devnet operator; ``start()`` returns once its HTTP server listens, ``stop()`` ends every thread."""

    def __init__(
        self,
        *,
        state: dict[str, Any],
        index: int,
        direct: bool = False,
        rpc_url: str | None = None,
        send_url: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        timing: OperatorTiming | None = None,
        acks_path: Path | None = None,
    ) -> None:
        operators = state.get("operators") or []
        if not 0 <= index < len(operators):
            raise DevnetStateError(f"no operator {index} in the devnet file ({len(operators)} operators)")
        config: dict[str, Any] = operators[index]
        self.index = index
        self.name = str(config.get("name") or f"operator-{index}")
        self.direct = direct
        self.rpc_url = rpc_url or str(state["rpc_url"])
        self.service_manager = str(state["contracts"]["service_manager"]).lower()
        self.timing = timing or OperatorTiming.from_state(state)
        if send_url is None:
            if direct:
                aggregator = state.get("aggregator") or {}
                if not aggregator.get("url"):
                    raise DevnetStateError("direct mode needs aggregator.url in the devnet file")
                send_url = str(aggregator["url"]).rstrip("/") + "/signatures"
            else:
                base = str(state.get("control_plane_url") or "http://127.0.0.1:8000")
                send_url = base.rstrip("/") + "/api/v1/signatures"
        self.send_url = send_url
        # Every response the control plane acknowledged (202), one JSON line each: the chaos suite's evidence,
        # kept by the operator (not by the control plane), that nothing acknowledged was lost.
        self.acks_path = acks_path
        self.host = host
        self.port = int(port if port is not None else config["port"])
        token = config.get("control_token")
        self._control_token = str(token).encode() if token else None
        self._keypair: KeyPair = keypair_from_secret(int(str(config["bls_secret"]), 16))
        self.operator_id = "0x" + self._keypair.operator_id.hex()
        if config.get("operator_id") and str(config["operator_id"]).lower() != self.operator_id:
            logger.warning(
                "%s: operator_id in the devnet file (%s) is not the id of its BLS key (%s); using the key's",
                self.name,
                config["operator_id"],
                self.operator_id,
            )

        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._outcomes: deque[bool] = deque(maxlen=PERFORMANCE_WINDOW)
        # (root, sender) -> "processing" | "signed": what not to do twice in this process's life.
        self._batches: dict[tuple[str, str], str] = {}
        # (root, sender) -> why it was refused on purpose (a bad batch): told to the control plane when it asks.
        self._refused: dict[tuple[str, str], str] = {}
        self._work: queue.Queue[BatchTask | None] = queue.Queue()

        self._send_cond = threading.Condition()
        self._send_heap: list[tuple[float, int, _Delivery]] = []
        self._send_seq = itertools.count()
        self._sending: dict[int, _Delivery] = {}  # in flight, by id()

        self._started_at = time.monotonic()
        self._first_block: int | None = None
        self._next_block: int | None = None
        self._head: int | None = None
        self._last_poll_ok: float | None = None
        self._poll_failures_in_row = 0

        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            return f"http://{self.host}:{self.port}"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def following_from(self) -> int | None:
        """The first block this node scans (head at its start + 1), once it has reached the chain."""
        return self._first_block

    def start(self) -> OperatorNode:
        server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.port = int(server.server_address[1])
        self._started_at = time.monotonic()
        self._spawn(f"{self.name}-http", lambda: server.serve_forever(poll_interval=0.1))
        self._spawn(f"{self.name}-follower", self._follow_loop)
        for i in range(self.timing.workers):
            self._spawn(f"{self.name}-worker-{i}", self._work_loop)
        for i in range(self.timing.senders):
            self._spawn(f"{self.name}-sender-{i}", self._send_loop)
        logger.info(
            "%s (operator id %s) serving its node API on %s; sending %s to %s",
            self.name,
            self.operator_id,
            self.url,
            "directly (upstream policy)" if self.direct else "through the control plane",
            self.send_url,
        )
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._send_cond:
            self._send_cond.notify_all()
        for _ in range(self.timing.workers):
            self._work.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        deadline = time.monotonic() + self.timing.stop_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        lingering = [t.name for t in self._threads if t.is_alive()]
        if lingering:
            logger.warning("%s: threads still finishing a request: %s", self.name, ", ".join(lingering))
        with self._send_cond:
            undelivered = len(self._send_heap) + len(self._sending)
        if undelivered:
            logger.warning("%s: stopping with %d undelivered responses", self.name, undelivered)
        logger.info("%s stopped", self.name)

    def __enter__(self) -> OperatorNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- following ----------------------------------------------------------------------------------------

    def _follow_loop(self) -> None:
        client = ChainClient(self.rpc_url, timeout=3.0, max_attempts=2, backoff_base=0.1, backoff_cap=0.5)
        max_range = self.timing.max_blocks_per_poll
        try:
            while not self._stop.is_set():
                try:
                    self._poll_once(client, max_range)
                except RangeTooLarge:
                    max_range = max(1, max_range // 2)
                    logger.info("%s: the node refused the log range; now %d blocks", self.name, max_range)
                    continue
                except Exception as exc:  # RpcError or anything else: never fatal: log, count, poll again
                    self._poll_failed(exc)
                else:
                    self._poll_succeeded()
                self._stop.wait(self.timing.poll_interval)
        finally:
            client.close()

    def _poll_once(self, client: ChainClient, max_range: int) -> None:
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
        while self._next_block <= head and not self._stop.is_set():
            to_block = min(head, self._next_block + max_range - 1)
            logs = client.get_logs(
                addresses=[self.service_manager],
                topics=[TOPICS["NewBatchV3"]],
                from_block=self._next_block,
                to_block=to_block,
            )
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

    # -- checking and signing -----------------------------------------------------------------------------

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

    # -- sending ------------------------------------------------------------------------------------------

    def _enqueue(self, delivery: _Delivery, *, delay: float) -> None:
        with self._send_cond:
            heapq.heappush(self._send_heap, (time.monotonic() + delay, next(self._send_seq), delivery))
            self._send_cond.notify()

    def _send_loop(self) -> None:
        while True:
            with self._send_cond:
                while True:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if self._send_heap and self._send_heap[0][0] <= now:
                        _, _, delivery = heapq.heappop(self._send_heap)
                        self._sending[id(delivery)] = delivery
                        break
                    wait = self._send_heap[0][0] - now if self._send_heap else 1.0
                    self._send_cond.wait(min(wait, 1.0))
            try:
                self._attempt(delivery)
            except Exception:
                logger.exception(
                    "%s: batch %s: unexpected failure while sending", self.name, delivery.task.root
                )
            finally:
                with self._send_cond:
                    self._sending.pop(id(delivery), None)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.timing.backoff_cap, self.timing.backoff_base * 2 ** (attempts - 1)))

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        root = delivery.task.root
        status: int | None = None
        try:
            response = requests.post(
                self.send_url,
                data=delivery.body,
                headers={"Content-Type": "application/json", "User-Agent": f"devnet-{self.name}"},
                timeout=self.timing.send_timeout,
                allow_redirects=False,
            )
            status = response.status_code
            detail = f"HTTP {status}"
            if status >= 300:
                text = response.text.strip().replace("\n", " ")
                detail += f": {text[:200]}" if text else ""
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}: {_describe(exc)}"
        if status is not None and 200 <= status < 300:
            with self._lock:
                self._counters.responses_sent += 1
                self._outcomes.append(True)
            if status == 202 and self.acks_path is not None:
                self._record_ack(delivery, response)
            logger.info(
                "%s: batch %s sent to %s (HTTP %d, attempt %d)",
                self.name,
                root,
                self.send_url,
                status,
                delivery.attempts,
            )
            return
        with self._lock:
            self._counters.responses_failed += 1
        if self.direct:
            # Upstream's policy: any failure (the aggregator's 404 for a task it has not seen yet included)
            # is retried, up to the number of tries, then the response is dropped.
            if delivery.attempts >= self.timing.direct_max_tries:
                self._abandon(
                    delivery, f"not accepted by {self.send_url} after {delivery.attempts} tries: {detail}"
                )
                return
        elif status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
            self._abandon(delivery, f"{self.send_url} refused it: {detail}")
            return
        delay = self.timing.direct_retry_interval if self.direct else self._backoff(delivery.attempts)
        logger.warning(
            "%s: batch %s not delivered (%s); attempt %d%s, retry in %.1fs",
            self.name,
            root,
            detail,
            delivery.attempts,
            f"/{self.timing.direct_max_tries}" if self.direct else "",
            delay,
        )
        self._enqueue(delivery, delay=delay)

    def _record_ack(self, delivery: _Delivery, response: requests.Response) -> None:
        assert self.acks_path is not None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        sent = json.loads(delivery.body)
        line = json.dumps(
            {
                "batchIdentifierHash": sent["batchIdentifierHash"],
                "operatorId": sent["operatorId"],
                "blsSignature": sent["blsSignature"],
                "status": answer.get("status") if isinstance(answer, dict) else None,
                "signatureId": answer.get("signatureId") if isinstance(answer, dict) else None,
                "at": time.time(),
            }
        )
        with self._lock:
            self.acks_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.acks_path, "a") as acks:
                acks.write(line + "\n")

    def _abandon(self, delivery: _Delivery, reason: str) -> None:
        with self._lock:
            # Not "signed" any more as far as a catch-up is concerned: asked again, it signs and sends again.
            self._batches.pop(delivery.task.key, None)
            self._counters.responses_abandoned += 1
            self._outcomes.append(False)
        logger.error("%s: batch %s abandoned (%s)", self.name, delivery.task.root, reason)

    # -- control ------------------------------------------------------------------------------------------

    def control_authorized(self, header: str | None) -> bool:
        if self._control_token is None or not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._control_token)

    def control_verify(self, tasks: list[BatchTask]) -> tuple[int, int, list[dict[str, str]]]:
        """Queue the requested batches; (accepted, skipped because signed or in progress here, refused).

        A batch this node already refused on purpose (a bad proof) is not checked again: its refusal is the
        answer, so the control plane records it rather than asking forever.
        """
        refused: list[dict[str, str]] = []
        accepted = 0
        for task in tasks:
            with self._lock:
                reason = self._refused.get(task.key)
            if reason is not None:
                refused.append({"batchMerkleRoot": task.root, "senderAddress": task.sender, "reason": reason})
            elif self.submit(task):
                accepted += 1
        skipped = len(tasks) - accepted - len(refused)
        with self._lock:
            self._counters.control_requests += 1
            self._counters.control_batches_skipped += skipped
        logger.info(
            "%s: control request to verify %d batches: %d accepted, %d skipped (signed or in progress), "
            "%d refused before",
            self.name,
            len(tasks),
            accepted,
            skipped,
            len(refused),
        )
        return accepted, skipped, refused

    # -- health and metrics -------------------------------------------------------------------------------

    def services_health(self) -> dict[str, _ServiceHealth]:
        now = time.monotonic()
        timing = self.timing
        with self._lock:
            last_ok = self._last_poll_ok
            failures = self._poll_failures_in_row
        with self._send_cond:
            pending = list(self._sending.values()) + [item[2] for item in self._send_heap]
        stopping = self._stop.is_set()

        if stopping:
            follower = _ServiceHealth("Down", UNHEALTHY, "stopping")
        elif last_ok is None:
            if now - self._started_at > timing.unhealthy_after:
                follower = _ServiceHealth(
                    "Down", UNHEALTHY, f"chain unreachable since start ({failures} failed polls)"
                )
            else:
                follower = _ServiceHealth("Initializing", PARTIAL, "waiting for the chain head")
        elif now - last_ok > timing.unhealthy_after:
            follower = _ServiceHealth(
                "Down", UNHEALTHY, f"chain unreachable for {now - last_ok:.0f}s ({failures} failed polls)"
            )
        elif failures >= timing.degraded_after_failures:
            follower = _ServiceHealth("Up", PARTIAL, f"the last {failures} chain polls failed")
        else:
            follower = _ServiceHealth("Up", HEALTHY)

        oldest = max((now - d.created for d in pending), default=0.0)
        if stopping:
            signer = _ServiceHealth("Down", UNHEALTHY, "stopping")
        elif len(pending) >= timing.send_backlog_degraded:
            signer = _ServiceHealth("Up", PARTIAL, f"{len(pending)} signed responses waiting to be delivered")
        elif pending and oldest > timing.send_stale_after:
            signer = _ServiceHealth("Up", PARTIAL, f"a signed response undelivered for {oldest:.0f}s")
        else:
            signer = _ServiceHealth("Up", HEALTHY)
        return {"chain-follower": follower, "batch-signer": signer}

    def node_health(self) -> tuple[int, list[str]]:
        services = self.services_health()
        code = max(
            (s.code for s in services.values()), key=lambda c: {HEALTHY: 0, PARTIAL: 1, UNHEALTHY: 2}[c]
        )
        reasons = [f"{sid}: {s.reason}" for sid, s in services.items() if s.reason]
        return code, reasons

    def performance_score(self) -> float:
        with self._lock:
            outcomes = list(self._outcomes)
        if not outcomes:
            return 100.0
        return 100.0 * sum(outcomes) / len(outcomes)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters.__dict__)

    def metrics_text(self) -> str:
        counters = self.counters()
        with self._lock:
            head = self._head
            next_block = self._next_block
            failures = self._poll_failures_in_row
        with self._send_cond:
            pending = len(self._send_heap) + len(self._sending)
        code, _ = self.node_health()
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{labels} {_number(value)}")

        metric(
            "eigen_performance_score",
            "gauge",
            "Share (0-100) of the last 100 settled batches this node handled well: signed and delivered, "
            "or rightly refused",
            self.performance_score(),
            f'{{avs_name="{AVS_NAME}"}}',
        )
        prefix = "devnet_operator_"
        for key, help_text in (
            ("batches_seen", "Batches taken up for checking (new events and control requests)"),
            ("batches_signed", "Batches whose root and proofs all held, signed"),
            ("batches_refused", "Batches not signed: bad root or proof, malformed, or not downloadable"),
            ("batch_download_failures", "Batches that could not be downloaded"),
            ("responses_sent", "Signed responses accepted by the receiver"),
            ("responses_failed", "Failed delivery attempts of signed responses"),
            ("responses_abandoned", "Signed responses given up on"),
            ("chain_polls", "Chain polls"),
            ("chain_poll_failures", "Chain polls that failed"),
            ("control_requests", "Accepted control requests to verify batches"),
            ("control_batches_skipped", "Batches of control requests skipped as signed or in progress"),
        ):
            metric(f"{prefix}{key}_total", "counter", help_text, counters[key])
        metric(f"{prefix}send_queue", "gauge", "Signed responses not yet delivered", pending)
        metric(
            f"{prefix}chain_poll_failures_in_row",
            "gauge",
            "Chain polls failed since the last success",
            failures,
        )
        if head is not None:
            metric(f"{prefix}chain_head_block", "gauge", "Chain head at the last successful poll", head)
        if next_block is not None:
            metric(f"{prefix}next_block", "gauge", "Next block to scan for NewBatchV3", next_block)
        metric(
            f"{prefix}health_status", "gauge", "Node health as the node API answers it (200/206/503)", code
        )
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


# ------------------------------------------------------------------------------------------------- HTTP


def _make_handler(node: OperatorNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"devnet-operator/{NODE_VERSION}"

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(document).encode(), "application/json", headers)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path == "/eigen/node":
                self._json(
                    200, {"node_name": node.name, "spec_version": SPEC_VERSION, "node_version": NODE_VERSION}
                )
            elif path == "/eigen/node/health":
                code, reasons = node.node_health()
                self._json(code, {"status": _health_word(code), "reasons": reasons})
            elif path == "/eigen/node/services":
                services = node.services_health()
                self._json(
                    200,
                    {
                        "services": [
                            {
                                "id": sid,
                                "name": name,
                                "description": description,
                                "status": services[sid].status,
                            }
                            for sid, (name, description) in SERVICES.items()
                        ]
                    },
                )
            elif match := _SERVICE_HEALTH.match(path):
                service = node.services_health().get(match.group(1))
                if service is None:
                    self._json(404, {"error": f"no service {match.group(1)!r}", "services": list(SERVICES)})
                else:
                    reasons = [service.reason] if service.reason else []
                    self._json(service.code, {"status": _health_word(service.code), "reasons": reasons})
            elif path == "/metrics":
                self._send(200, node.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == CONTROL_PATH:
                self._json(405, {"error": "use POST"}, {"Allow": "POST"})
            else:
                self._json(404, {"error": "not found"})

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            path = urlsplit(self.path).path.rstrip("/")
            if path != CONTROL_PATH:
                if path.startswith("/eigen/") or path == "/metrics":
                    self._json(405, {"error": "use GET"}, {"Allow": "GET"})
                else:
                    self._json(404, {"error": "not found"})
                return
            length_header = self.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            if not node.control_authorized(self.headers.get("Authorization")):
                # Drain a small body so closing the socket does not reset the connection under the answer.
                if length is not None and length <= CONTROL_MAX_BODY:
                    self.rfile.read(length)
                self._json(
                    401,
                    {"error": "missing or wrong bearer token"},
                    {"WWW-Authenticate": 'Bearer realm="operator-control"'},
                )
                return
            if length is None:
                self._json(411, {"error": "Content-Length required"})
                return
            if length > CONTROL_MAX_BODY:
                self._json(413, {"error": f"body is larger than {CONTROL_MAX_BODY} bytes"})
                return
            body = self.rfile.read(length)
            try:
                tasks = parse_control_request(body)
            except ControlRequestError as exc:
                self._json(exc.status, exc.as_json())
                return
            accepted, skipped, refused = node.control_verify(tasks)
            self._json(202, {"accepted": accepted, "skipped": skipped, "refused": refused})

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s http: " + format, node.name, *args)

    return Handler


def _health_word(code: int) -> str:
    return {HEALTHY: "healthy", PARTIAL: "partially healthy", UNHEALTHY: "unhealthy"}.get(code, str(code))


# -------------------------------------------------------------------------------------------- entry point


def run_operator(
    *,
    state: dict[str, Any],
    index: int,
    direct: bool,
    stop: threading.Event | None = None,
    acks_path: Path | None = None,
) -> None:
    """Run operator ``index`` of the devnet file until SIGTERM/SIGINT (or ``stop`` is set)."""
    stopping = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():

        def _stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    node = OperatorNode(state=state, index=index, direct=direct, acks_path=acks_path).start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        node.stop()


__all__ = [
    "BatchTask",
    "ControlRequestError",
    "OperatorNode",
    "OperatorTiming",
    "parse_control_request",
    "run_operator",
]
