"""One aggregator process: the task store, signatures, responder and HTTP API put together and started."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from controlplane.loops import stop_on_signals
from controlplane.netrpc import rpc_serve
from devnet.aggregator.api import Api
from devnet.aggregator.common import SUBMIT_THREADS, _short
from devnet.aggregator.responder import Responder
from devnet.aggregator.rpc import RpcApi
from devnet.http import serve

logger = logging.getLogger("devnet.aggregator")


class AggregatorNode(Responder, Api, RpcApi):
    """One aggregator process's worth of state and threads; ``start()`` returns once it listens."""

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("aggregator already started")
        # Follow the chain from its head now: what was created before this start is never seen (as upstream).
        client = self._client()
        try:
            self.next_block = client.block_number() + 1
        finally:
            client.close()
        self._operators_load()
        self._server, http = serve(
            self._handler_class(), host="127.0.0.1", port=self.config.port, name="aggregator-http"
        )
        self._threads.append(http)
        if self.config.rpc_port is not None:
            self._rpc_server, rpc = rpc_serve(
                host="127.0.0.1",
                port=self.config.rpc_port,
                methods_for=self._rpc_methods,
                name="aggregator-rpc",
            )
            self._threads.append(rpc)
        self.started_at = time.time()
        for name, target in (
            ("aggregator-follow", self._follow_loop),
            ("aggregator-expire", self._expire_loop),
            *((f"aggregator-submit-{n}", self._submit_loop) for n in range(SUBMIT_THREADS)),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "aggregator %s listening on %s, following NewBatchV3 from block %d, task window %gs",
            self.boot_id,
            self.url,
            self.next_block,
            self.config.task_window,
        )

    def _operators_load(self) -> None:
        """Every known operator's keys before the first signature, as eigensdk's operators-info service loads
        them when it starts: each G2 key parsed and subgroup-checked, each G1 key read from the registry. A
        restarted aggregator otherwise paid for them while answering its first replayed batches. Best effort: a
        key that fails here is read at its first use."""
        for operator_id in self.config.operator_keys:
            try:
                self._public_key(operator_id)
                self._pubkey_g1(bytes.fromhex(operator_id[2:]))
            except Exception as exc:
                logger.warning("operator keys not loaded at start (%s): read at first use", _short(exc))
                return

    def __enter__(self) -> AggregatorNode:
        self.start()
        return self


def run_aggregator(*, state: dict[str, Any], stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); everything held is lost on exit, as upstream."""
    stopping = stop or threading.Event()
    stop_on_signals(stopping)
    node = AggregatorNode(state=state)
    node.start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        node.stop()
