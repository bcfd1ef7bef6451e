"""The "chain" stage: plain JSON-RPC access (head, blocks, logs with an adaptive range) with retries."""

from __future__ import annotations

from chain.client import BlockHeader, ChainClient, RawLog
from chain.errors import (
    BlockNotFound,
    NodeUnavailable,
    RangeTooLarge,
    RpcError,
    TransientRpcError,
    rpc_error_for,
)
from chain.ranges import AdaptiveRange, fetch_logs

__all__ = [
    "AdaptiveRange",
    "BlockHeader",
    "BlockNotFound",
    "ChainClient",
    "NodeUnavailable",
    "RangeTooLarge",
    "RawLog",
    "RpcError",
    "TransientRpcError",
    "fetch_logs",
    "rpc_error_for",
]
