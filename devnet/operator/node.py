"""One devnet operator: its parts (follower, checker, sender, control, node API) put together and started."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from controlplane.loops import stop_on_signals
from devnet.http import serve
from devnet.operator.api import NodeApi
from devnet.operator.follower import Follower

logger = logging.getLogger("devnet.operator")


class OperatorNode(Follower, NodeApi):
    """One devnet operator; ``start()`` returns once its HTTP server listens, ``stop()`` ends every thread."""

    def start(self) -> OperatorNode:
        server, thread = serve(
            self._handler_class(), host=self.host, port=self.port, name=f"{self.name}-http"
        )
        self._server = server
        self._threads.append(thread)
        self.port = int(server.server_address[1])
        self._started_at = time.monotonic()
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

    def __enter__(self) -> OperatorNode:
        return self.start()


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
    stop_on_signals(stopping)
    node = OperatorNode(state=state, index=index, direct=direct, acks_path=acks_path).start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        node.stop()
