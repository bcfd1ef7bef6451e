"""What an operator is: its key, where it sends, the state its parts share, and how it stops."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bls import KeyPair, keypair_from_secret
from devnet.operator.common import (
    PERFORMANCE_WINDOW,
    BatchTask,
    OperatorTiming,
    _Counters,
    _Delivery,
)
from devnet.state import DevnetStateError

logger = logging.getLogger("devnet.operator")


class OperatorBase:
    """The state every part of an operator shares, and its life cycle; the parts are the subclasses."""

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
        wire: str | None = None,
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
        # "gob": Go net/rpc, as Aligned's operators; "http": JSON. A send_url given is an HTTP one.
        self.wire = wire or ("http" if send_url is not None else str(state.get("operator_wire") or "http"))
        if self.wire not in ("gob", "http"):
            raise DevnetStateError(f"wire must be gob or http, not {self.wire!r}")
        if send_url is None and self.wire == "gob":
            aggregator_rpc = (state.get("aggregator") or {}).get("rpc_address")
            send_url = str(aggregator_rpc or "") if direct else str(state.get("control_plane_rpc") or "")
            if not send_url:
                where = "aggregator.rpc_address" if direct else "control_plane_rpc"
                raise DevnetStateError(f"sending over gob needs {where} in the devnet file")
        elif send_url is None:
            if direct:
                aggregator = state.get("aggregator") or {}
                if not aggregator.get("url"):
                    raise DevnetStateError("direct mode needs aggregator.url in the devnet file")
                send_url = str(aggregator["url"]).rstrip("/") + "/signatures"
            else:
                base = str(state.get("control_plane_url") or "http://127.0.0.1:8000")
                send_url = base.rstrip("/") + "/api/v1/signatures"
        self.send_url = send_url  # an http(s) URL, or HOST:PORT over gob
        self._rpc_local = threading.local()  # each sender thread's net/rpc connection
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

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
