"""Plain JSON-RPC access to an Ethereum node: head, blocks and logs, with retries.

Deliberately not web3: the ingester's hot loop is eth_getLogs + a few headers, and web3's middleware and
formatters cost more than the request itself. Its HTTP is ``chain.transport``: a kept-alive urllib3 pool.

Errors are ``chain.errors``' classes: what the caller should do follows from the class alone.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from chain.errors import (
    BlockNotFound,
    NodeUnavailable,
    RangeTooLarge,
    RpcError,
    TransientRpcError,
    rpc_error_for,
)
from chain.transport import HttpTransport, TransportFailure

logger = logging.getLogger("chain")

T = TypeVar("T")

GET_BLOCKS_CHUNK = 100
# Block tags a node accepts in place of a number.
BLOCK_TAGS = frozenset({"latest", "earliest", "pending", "safe", "finalized"})


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


@dataclass(frozen=True)
class RawLog:
    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    transaction_hash: str
    transaction_index: int
    log_index: int
    removed: bool


def _hex_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected a hex quantity, got {value!r}")
    return int(value, 16)


def _hex_str(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected hex data, got {value!r}")
    return value.lower()


def _block_param(number: int | str) -> str:
    if isinstance(number, str):
        if number not in BLOCK_TAGS:
            raise ValueError(f"unknown block tag {number!r}")
        return number
    if number < 0:
        raise ValueError(f"negative block number {number}")
    return hex(number)


def parse_block(raw: Any) -> BlockHeader | None:
    if raw is None:
        return None
    return BlockHeader(
        number=_hex_int(raw["number"]),
        hash=_hex_str(raw["hash"]),
        parent_hash=_hex_str(raw["parentHash"]),
        timestamp=_hex_int(raw["timestamp"]),
    )


def parse_log(raw: Any) -> RawLog:
    return RawLog(
        address=_hex_str(raw["address"]),
        topics=tuple(_hex_str(topic) for topic in raw["topics"]),
        data=_hex_str(raw["data"]),
        block_number=_hex_int(raw["blockNumber"]),
        block_hash=_hex_str(raw["blockHash"]),
        transaction_hash=_hex_str(raw["transactionHash"]),
        transaction_index=_hex_int(raw["transactionIndex"]),
        log_index=_hex_int(raw["logIndex"]),
        removed=bool(raw.get("removed", False)),
    )


def _topic_filter(topics: Sequence[Sequence[str] | str | None] | None) -> list[Any] | None:
    if topics is None:
        return None
    out: list[Any] = []
    for topic in topics:
        if topic is None or isinstance(topic, str):
            out.append(topic.lower() if topic else None)
        else:
            out.append([t.lower() for t in topic])  # OR of alternatives in this position
    return out


class ChainClient:
    """JSON-RPC client for one node URL.

    Not thread-safe: it owns an HTTP transport (its connection pool) and a request-id counter. Use one
    ``ChainClient`` per thread; each is cheap.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff_base: float = 0.25,
        backoff_cap: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._ids = itertools.count(1)
        # No transport-level retries: this class owns the retry policy and its logging.
        self._http = HttpTransport(url, timeout=timeout)

    def clone(self, *, sleep: Callable[[float], None] | None = None) -> ChainClient:
        """A client for the same node with the same retry policy and its own session: for another thread."""
        return ChainClient(
            self.url,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            sleep=sleep or self._sleep,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- retry policy -------------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): base * 2^(n-1) plus up to 20% jitter, capped.

        The jitter is added (never subtracted) so delays keep increasing until the cap; replicas that failed
        together still drift apart because their jitters accumulate.
        """
        raw = self.backoff_base * (2 ** (attempt - 1))
        return min(self.backoff_cap, raw * (1.0 + 0.2 * random.random()))

    def _with_retries(self, label: str, attempt_once: Callable[[], T]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return attempt_once()
            except TransientRpcError as exc:
                if attempt >= self.max_attempts:
                    exc.message = f"{exc.message}; gave up after {attempt} attempts"
                    exc.args = (str(exc),)
                    raise
                delay = self.backoff_delay(attempt)
                # One line per retry, no traceback: a flapping node must not flood the log.
                logger.warning(
                    "rpc %s failed (%s); attempt %d/%d, retry in %.2fs",
                    label,
                    exc.describe(),
                    attempt,
                    self.max_attempts,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- transport ----------------------------------------------------------------------------------------

    def _post(self, payload: Any, method: str) -> Any:
        """One HTTP POST; returns the decoded JSON body or raises a mapped error."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            response = self._http.post(body)
        except TransportFailure as exc:
            if exc.connect:
                raise NodeUnavailable(None, exc.reason, method) from None
            raise TransientRpcError(None, exc.reason, method) from None
        status = response.status
        if status == 413:
            raise RangeTooLarge(None, "HTTP 413", method)
        if status in (408, 425, 429) or status >= 500:
            raise TransientRpcError(None, f"HTTP {status}", method)
        try:
            decoded = json.loads(response.body)
        except ValueError:
            if status != 200:
                raise RpcError(None, f"HTTP {status}", method) from None
            raise TransientRpcError(None, "answer is not JSON", method) from None
        if status != 200:
            # Some providers send a JSON-RPC error with HTTP 400; map it, otherwise report the status.
            error = decoded.get("error") if isinstance(decoded, dict) else None
            if isinstance(error, dict):
                raise self._error(error, method)
            raise RpcError(None, f"HTTP {status}", method)
        return decoded

    @staticmethod
    def _error(error: Any, method: str) -> RpcError:
        if not isinstance(error, dict):
            return TransientRpcError(None, f"malformed JSON-RPC error {error!r:.100}", method)
        code = error.get("code")
        message = str(error.get("message", ""))
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it: {"data": {"data": "0x…"}}
            data = data.get("data")
        hex_data = data.lower() if isinstance(data, str) and data.startswith("0x") else None
        return rpc_error_for(method, code if isinstance(code, int) else None, message, hex_data)

    def _result(self, answer: Any, method: str) -> Any:
        # Lenient about the "jsonrpc" member (some gateways drop it); strict about result/error.
        if isinstance(answer, dict) and answer.get("error") is not None:
            raise self._error(answer["error"], method)
        if not isinstance(answer, dict) or "result" not in answer:
            raise TransientRpcError(None, "answer is not JSON-RPC", method)
        return answer["result"]

    def _parsed(self, parse: Callable[[Any], T], value: Any, method: str) -> T:
        # A malformed result is a provider glitch (or a proxy in the way); treat it like a bad answer.
        try:
            return parse(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientRpcError(None, f"malformed result: {exc!r:.120}", method) from None

    # -- public API ---------------------------------------------------------------------------------------

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call, retrying transient failures."""
        return self._call(method, params, lambda value: value)

    def _call(self, method: str, params: list[Any] | None, parse: Callable[[Any], T]) -> T:
        def once() -> T:
            request_id = next(self._ids)
            payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}
            answer = self._post(payload, method)
            if isinstance(answer, dict) and answer.get("id") not in (request_id, None):
                raise TransientRpcError(None, "answer id does not match the request", method)
            return self._parsed(parse, self._result(answer, method), method)

        return self._with_retries(method, once)

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """One JSON-RPC batch request; results in input order. Any error element raises its mapped error.

        A transient error in any element retries the whole batch (the calls here are all reads).
        """
        return self._batch(calls, lambda value: value)

    def _batch(self, calls: Sequence[tuple[str, list[Any]]], parse: Callable[[Any], T]) -> list[T]:
        if not calls:
            return []
        methods = sorted({method for method, _ in calls})
        label = f"batch[{len(calls)}]:{','.join(methods)}"

        def once() -> list[T]:
            ids = [next(self._ids) for _ in calls]
            payload = [
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
                for request_id, (method, params) in zip(ids, calls, strict=True)
            ]
            answer = self._post(payload, label)
            if isinstance(answer, dict):
                # A provider that refuses the whole batch (too large, rate-limited) answers with one error.
                if answer.get("error") is not None:
                    raise self._error(answer["error"], label)
                raise TransientRpcError(None, "batch answer is not a list", label)
            if not isinstance(answer, list):
                raise TransientRpcError(None, "batch answer is not a list", label)
            by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
            results: list[T] = []
            for request_id, (method, _) in zip(ids, calls, strict=True):
                if request_id not in by_id:
                    raise TransientRpcError(None, f"batch answer lacks id {request_id}", method)
                results.append(self._parsed(parse, self._result(by_id[request_id], method), method))
            return results

        return self._with_retries(label, once)

    def chain_id(self) -> int:
        return self._call("eth_chainId", [], _hex_int)

    def block_number(self) -> int:
        return self._call("eth_blockNumber", [], _hex_int)

    def get_block(self, number: int | str) -> BlockHeader | None:
        """Header of block ``number`` (or a tag such as "latest"); None when the node has no such block."""
        return self._call("eth_getBlockByNumber", [_block_param(number), False], parse_block)

    def get_blocks(self, numbers: Sequence[int]) -> list[BlockHeader]:
        """Headers for ``numbers`` in order, batched <= 100 per request.

        Raises ``BlockNotFound`` if the node lacks one (beyond its head, or a lagging backend behind a
        load balancer): silently returning fewer headers would let a caller misalign them.
        """
        headers: list[BlockHeader] = []
        for start in range(0, len(numbers), GET_BLOCKS_CHUNK):
            chunk = numbers[start : start + GET_BLOCKS_CHUNK]
            calls = [("eth_getBlockByNumber", [_block_param(n), False]) for n in chunk]
            for number, header in zip(chunk, self._batch(calls, parse_block), strict=True):
                if header is None:
                    raise BlockNotFound(None, f"node has no block {number}", "eth_getBlockByNumber")
                headers.append(header)
        return headers

    def get_logs(
        self,
        *,
        addresses: Sequence[str],
        topics: Sequence[Sequence[str] | str | None] | None,
        from_block: int,
        to_block: int,
    ) -> list[RawLog]:
        """ONE eth_getLogs over [from_block, to_block], sorted by (block_number, log_index).

        An empty ``addresses`` means any address (JSON-RPC semantics). Range refusals raise ``RangeTooLarge``.
        """
        if from_block < 0 or to_block < from_block:
            raise ValueError(f"bad block range {from_block}-{to_block}")
        flt: dict[str, Any] = {"fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if addresses:
            flt["address"] = [address.lower() for address in addresses]
        topic_filter = _topic_filter(topics)
        if topic_filter is not None:
            flt["topics"] = topic_filter

        def parse(value: Any) -> list[RawLog]:
            if not isinstance(value, list):
                raise TypeError("eth_getLogs result is not a list")
            return sorted(map(parse_log, value), key=lambda log: (log.block_number, log.log_index))

        return self._call("eth_getLogs", [flt], parse)
