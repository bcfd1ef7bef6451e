"""Health by service, as the EigenLayer node API reports it, the performance score and Prometheus metrics."""

from __future__ import annotations

import logging
import time

from devnet.operator.base import OperatorBase
from devnet.operator.common import (
    AVS_NAME,
    HEALTHY,
    PARTIAL,
    UNHEALTHY,
    _ServiceHealth,
)

logger = logging.getLogger("devnet.operator")


class Health(OperatorBase):
    """Health by service, as the EigenLayer node API reports it, the performance score and Prometheus metrics."""

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
