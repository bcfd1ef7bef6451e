"""Probe one operator's EigenLayer node API: ``GET /eigen/node/health`` (state), ``GET /eigen/node`` (version).

The probe never touches the database, so it can run in any thread. ``timeout`` bounds the whole probe (both
requests), not each socket read (``controlplane.outbound`` fences every call), and the socket is the operator's
choice: it is parsed strictly and refused when it names an address that is not allowed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from controlplane.outbound import DeadlineExceeded, OutboundError, Target, operator_target, request
from liveness.models import OperatorState

HEALTH_PATH = "/eigen/node/health"
NODE_PATH = "/eigen/node"
MAX_BODY_BYTES = 64 * 1024
NODE_VERSION_MAX = 128  # OperatorLiveness.node_version
ERROR_MAX = 300
HEADERS = {"Accept": "application/json", "User-Agent": "avs-controlplane-liveness"}


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw: up (200), degraded (206) or down (503, any other status, no answer), and why."""

    state: OperatorState
    node_version: str = ""
    # Why the node is not fully up ("" when it is); for a degraded node, what it reported.
    error: str = ""
    # Seconds until the health answer (or until the probe gave up).
    latency: float = 0.0

    @property
    def reason(self) -> str:
        return self.error or "healthy (200)"


def _node_version(target: Target, *, deadline: float) -> str:
    """``node_version`` from ``GET /eigen/node``, or "" when it does not answer that in time and in shape."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return ""
    try:
        answer = request(
            "GET", target, NODE_PATH, headers=HEADERS, timeout=remaining, max_bytes=MAX_BODY_BYTES
        )
        document = json.loads(answer.body) if answer.status == 200 else None
    except (OutboundError, ValueError):
        return ""
    version = document.get("node_version") if isinstance(document, dict) else None
    return version.strip()[:NODE_VERSION_MAX] if isinstance(version, str) else ""


def probe_operator(*, socket: str, timeout: float) -> ProbeResult:
    """Probe the node API at ``socket``; returns within about ``timeout`` seconds whatever the node does."""
    started = time.monotonic()
    deadline = started + timeout

    def down(error: str) -> ProbeResult:
        return ProbeResult(
            state=OperatorState.DOWN, error=error[:ERROR_MAX], latency=time.monotonic() - started
        )

    try:
        target = operator_target(socket)
        answer = request(
            "GET",
            target,
            HEALTH_PATH,
            headers=HEADERS,
            timeout=max(0.001, deadline - time.monotonic()),
            max_bytes=MAX_BODY_BYTES,
        )
    except DeadlineExceeded:
        return down(f"no answer within {timeout:g}s")
    except OutboundError as exc:
        return down(exc.reason)
    latency = time.monotonic() - started
    status = answer.status
    if status == 200:
        state, error = OperatorState.UP, ""
    elif status == 206:
        state, error = OperatorState.DEGRADED, "partially healthy (206)"
    elif status == 503:
        return down("unhealthy (503)")
    else:
        return down(f"unexpected status {status}")
    return ProbeResult(
        state=state, node_version=_node_version(target, deadline=deadline), error=error, latency=latency
    )
