"""The chain stage's errors: a JSON-RPC error answer, or the failure to get one, mapped to what to do about it.

Error model (the caller decides what to do from the class alone):

- ``RangeTooLarge``: the provider refused an eth_getLogs range or result size; retrying the same request is
  pointless, the caller shrinks the range (see ``ranges.fetch_logs``).
- ``TransientRpcError``: transport failures, timeouts, HTTP 429/5xx, "header not found" and friends; ``call``
  and ``batch`` retry these with capped exponential backoff. ``NodeUnavailable`` is the subset where no
  connection could be made at all (refused, DNS, connect timeout), so a smaller request would not help either.
- ``RpcError``: any other JSON-RPC error answer; not retried.
"""

from __future__ import annotations

from typing import Any

# Wording providers use when an eth_getLogs range or result is too big (geth, erigon, nethermind, besu,
# Infura, Alchemy, QuickNode, Ankr, ...). Only consulted for eth_getLogs: "exceeds" from eth_call means gas.
# A getLogs that times out on the node's side is treated the same way: a smaller range is the cure.
_RANGE_WORDING = (
    "query returned more than",
    "block range",
    "range too large",
    "range is too large",
    "too many",
    "exceed",
    "limit exceeded",
    "response size",
    "response is too big",
    "max results",
    "timeout",
    "timed out",
)
# Rate limits; checked first because "too many requests" / "rate limit exceeded" would otherwise read as a
# range refusal.
_RATE_LIMIT_WORDING = ("rate limit", "rate-limit", "too many requests", "request rate", "capacity")
# Node hiccups worth retrying as is.
_TRANSIENT_WORDING = (
    "header not found",
    "internal error",
    "timeout",
    "timed out",
    "try again",
    "temporarily",
    "unavailable",
    "overloaded",
    "busy",
)


class RpcError(Exception):
    """A JSON-RPC error answer (or a failure to get one) for ``method``."""

    def __init__(self, code: int | None, message: str, method: str, data: str | None = None) -> None:
        self.code = code
        self.message = message
        self.method = method
        # The error's data member when it is hex: an eth_call or eth_estimateGas revert's return data.
        self.data = data
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"{self.message} (code {self.code})" if self.code is not None else self.message

    def __str__(self) -> str:
        return f"rpc {self.method} failed: {self.describe()}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the three-argument constructor picklable (RQ and multiprocessing pickle exceptions).
        return (type(self), (self.code, self.message, self.method, self.data))


class RangeTooLarge(RpcError):
    """The provider refused the eth_getLogs block range or result size."""


class TransientRpcError(RpcError):
    """A failure that may go away by itself: transport, timeout, HTTP 429/5xx, node hiccup."""


class NodeUnavailable(TransientRpcError):
    """No connection could be made (refused, DNS, connect timeout): the node is down, not overloaded."""


class BlockNotFound(RpcError):
    """``get_blocks`` asked for a block the node does not have (yet, or any more after a reorg)."""


def rpc_error_for(method: str, code: int | None, message: str, data: str | None = None) -> RpcError:
    """Map a JSON-RPC error answer to the error class that says what the caller should do."""
    text = message.lower()
    if code == 429 or any(word in text for word in _RATE_LIMIT_WORDING):
        return TransientRpcError(code, message, method)
    if method == "eth_getLogs" and (
        code == -32005  # "limit exceeded" in EIP-1474; Infura/erigon use it for result limits
        or (code == -32602 and ("range" in text or "limit" in text))
        or any(word in text for word in _RANGE_WORDING)
    ):
        return RangeTooLarge(code, message, method)
    if code == -32005 or any(word in text for word in _TRANSIENT_WORDING):
        return TransientRpcError(code, message, method)
    return RpcError(code, message, method, data)
