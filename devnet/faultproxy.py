"""A JSON-RPC proxy in front of a real node that injects the faults a real node cannot produce on demand.

Used by the tests and by the chaos suite (between the control plane and anvil). It forwards every POST (single
calls and batches) to ``upstream`` and, by rule:

- ``outage("refuse", seconds)``: closes its listening socket and every open connection, so clients get
  "connection refused" until it listens again on the same port; ``outage("error", seconds)``: answers every
  request with HTTP 503;

- ``max_log_range``: answers an eth_getLogs spanning more than that many blocks with a provider-style
  JSON-RPC range error (alternating Infura's -32005 "query returned more than 10000 results" and a
  "block range too large" wording), as a per-element error inside batches;
- ``fail_first`` / ``fail_every``: answers the next N (``fail_first`` counts down, so it can be set again
  later) or every Nth HTTP request that contains a method in ``fail_methods`` with ``fail_status`` (and
  ``fail_body``), after ``fail_delay`` seconds;
- ``reverse_batches``: returns batch answers in reverse order (clients must match by id).

Counters (read them after the calls; they are updated under a lock): ``requests`` (HTTP requests),
``faults`` (injected faults, HTTP or JSON-RPC), ``log_ranges`` ((from, to) of every eth_getLogs seen),
``batch_sizes`` (element count of every batch seen). Rules are plain attributes and may be changed live.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

import requests

from devnet.http import JsonHandler

RANGE_ERRORS = (
    {"code": -32005, "message": "query returned more than 10000 results"},
    {"code": -32602, "message": "block range too large"},
)


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        max_log_range: int | None = None,
        fail_first: int = 0,
        fail_methods: set[str] | frozenset[str] = frozenset({"eth_getLogs"}),
        fail_status: int = 503,
        fail_every: int | None = None,
        fail_body: bytes = b"injected fault",
        fail_delay: float = 0.0,
        reverse_batches: bool = False,
    ) -> None:
        self.upstream = upstream
        self.max_log_range = max_log_range
        self.fail_first = fail_first
        self.fail_methods = set(fail_methods)
        self.fail_status = fail_status
        self.fail_every = fail_every
        self.fail_body = fail_body
        self.fail_delay = fail_delay
        self.reverse_batches = reverse_batches
        self.requests = 0
        self.faults = 0
        self.log_ranges: list[tuple[int, int]] = []
        self.batch_sizes: list[int] = []
        self._matching = 0  # HTTP requests that contained a method in fail_methods
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._connections: set[socket.socket] = set()
        self._erroring_until = 0.0
        self._outage_timer: threading.Timer | None = None
        self._heal_lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FaultProxy is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self, port: int = 0) -> FaultProxy:
        """Listen on ``port`` (0: a free one; again on the same one after a refusal)."""
        self._stopped = False
        handler = type("Handler", (_Handler,), {"proxy": self})
        server = _Server(("127.0.0.1", port or self._port), handler)
        server.daemon_threads = True
        server.block_on_close = False  # keep-alive client connections must not hold up stop()
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="faultproxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._heal_lock:
            self._stopped = True
            if self._outage_timer is not None:
                self._outage_timer.cancel()
            self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        with self._lock:
            self._server = None
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # keep-alive connections would otherwise go on being served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def outage(self, kind: str, seconds: float) -> None:
        """``refuse`` connections or answer every request with an ``error`` for ``seconds``, then heal.

        A new outage first heals the one under way."""
        if kind not in ("refuse", "error"):
            raise ValueError(f"unknown outage {kind!r}: refuse or error")
        self.heal()
        if kind == "refuse":
            self._close()
        else:
            with self._lock:
                self._erroring_until = time.monotonic() + seconds
        timer = threading.Timer(seconds, self.heal)
        timer.daemon = True
        self._outage_timer = timer
        timer.start()

    def heal(self) -> None:
        """End any outage now: listening again, answering normally."""
        with self._heal_lock:
            with self._lock:
                timer, self._outage_timer = self._outage_timer, None
                self._erroring_until = 0.0
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            if self._server is None and self._port and not self._stopped:
                self.start()

    def _track(self, conn: socket.socket, *, open_: bool, server: object = None) -> None:
        with self._lock:
            if open_ and server is not self._server:
                # Accepted by a listener a refusal has closed since (its handler started late): cut, as the
                # connections it held were.
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            elif open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- rules --------------------------------------------------------------------------------------------

    def _http_fault(self, methods: set[str]) -> bool:
        with self._lock:
            self.requests += 1
            if time.monotonic() < self._erroring_until:
                self.faults += 1
                return True
            if not methods & self.fail_methods:
                return False
            self._matching += 1
            fail = self.fail_first > 0 or (
                self.fail_every is not None and self._matching % self.fail_every == 0
            )
            self.fail_first = max(0, self.fail_first - 1)
            if fail:
                self.faults += 1
            return fail

    def _range_fault(self, call: dict[str, Any]) -> dict[str, Any] | None:
        if call.get("method") != "eth_getLogs":
            return None
        params = call.get("params") or [{}]
        flt = params[0] if isinstance(params[0], dict) else {}
        try:
            first, last = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        except (KeyError, TypeError, ValueError):
            return None  # tags such as "latest": forward as is
        with self._lock:
            self.log_ranges.append((first, last))
            if self.max_log_range is None or last - first + 1 <= self.max_log_range:
                return None
            error = RANGE_ERRORS[self.faults % len(RANGE_ERRORS)]
            self.faults += 1
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": dict(error)}

    def _forward(self, payload: Any) -> tuple[int, bytes]:
        try:
            response = requests.post(self.upstream, json=payload, timeout=30)
        except requests.RequestException as exc:
            return 502, f"upstream unreachable: {exc}".encode()
        return response.status_code, response.content

    def handle(self, body: bytes) -> tuple[int, bytes]:
        try:
            payload = json.loads(body)
        except ValueError:
            return self._forward_raw(body)
        calls = payload if isinstance(payload, list) else [payload]
        calls = [call for call in calls if isinstance(call, dict)]
        methods = {str(call.get("method")) for call in calls}
        if self._http_fault(methods):
            if self.fail_delay:
                time.sleep(self.fail_delay)
            return self.fail_status, self.fail_body
        if isinstance(payload, list):
            with self._lock:
                self.batch_sizes.append(len(payload))
        refused = {id(call): fault for call in calls if (fault := self._range_fault(call)) is not None}
        if not refused:
            status, content = self._forward(payload)
            if isinstance(payload, list) and self.reverse_batches and status == 200:
                content = json.dumps(list(reversed(json.loads(content)))).encode()
            return status, content
        if not isinstance(payload, list):
            return 200, json.dumps(refused[id(payload)]).encode()
        # Batch: forward the acceptable elements, splice the injected errors back in.
        answers = list(refused.values())
        rest = [call for call in calls if id(call) not in refused]
        if rest:
            status, content = self._forward(rest)
            if status != 200:
                return status, content
            answers += json.loads(content)
        if self.reverse_batches:
            answers.reverse()
        return 200, json.dumps(answers).encode()

    def _forward_raw(self, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
        try:
            response = requests.post(
                self.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
            )
        except requests.RequestException as exc:
            return 502, f"upstream unreachable: {exc}".encode()
        return response.status_code, response.content


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection the proxy cut on purpose (an outage) breaks mid-answer: nothing to report


class _Handler(JsonHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, like a real provider; the client pools connections
    timeout = 5  # idle keep-alive connections close by themselves
    # Headers and body in one segment, sent at once: avoids a 40 ms Nagle/delayed-ACK stall per request.
    wbufsize = -1
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, open_=True, server=self.server)

    def finish(self) -> None:
        self.proxy._track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        status, content = self.proxy.handle(self.rfile.read(length))
        self.send_body(status, content, "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests assert on the client's log lines
