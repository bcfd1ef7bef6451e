"""The operator's limits, timing and the small records its parts share."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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


class _DownloadError(Exception):
    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_http_url(value: str) -> bool:
    if len(value) > MAX_POINTER_LENGTH:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
