"""Probe one operator's EigenLayer node API: ``GET /eigen/node/health`` (state), ``GET /eigen/node`` (version).

The probe never touches the database, so it can run in any thread. ``timeout`` bounds the whole probe (both
requests), not each socket read: a watchdog shuts the connection down at the deadline, so a node that trickles
its answer a byte at a time is down just like one that never answers.
"""

from __future__ import annotations

import http.client
import json
import socket as socketlib
import ssl
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitoring.models import OperatorState

HEALTH_PATH = "/eigen/node/health"
NODE_PATH = "/eigen/node"
MAX_BODY_BYTES = 64 * 1024
NODE_VERSION_MAX = 128  # OperatorLiveness.node_version
ERROR_MAX = 300
HEADERS = {"Accept": "application/json", "User-Agent": "avs-controlplane-liveness", "Connection": "close"}

_TLS_CONTEXT = ssl.create_default_context()


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


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int | None
    prefix: str


class _DeadlineExceeded(Exception):
    pass


def _target_parse(socket: str) -> _Target:
    """The node API's base URL from a registered socket (``http(s)://host:port[/prefix]``, or bare ``host:port``)."""
    raw = socket.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid socket {socket[:100]!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid socket {socket[:100]!r}: expected http(s)://host:port")
    return _Target(scheme=parts.scheme, host=parts.hostname, port=port, prefix=parts.path.rstrip("/"))


def _get(target: _Target, path: str, *, deadline: float, read_body: bool) -> tuple[int, bytes]:
    """One GET that returns or raises ``_DeadlineExceeded`` by ``deadline`` (a ``time.monotonic()`` value)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlineExceeded
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=remaining, context=_TLS_CONTEXT)
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=remaining)
    expired = threading.Event()

    def _expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socketlib.SHUT_RDWR)

    watchdog = threading.Timer(remaining, _expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        if expired.is_set():  # the watchdog fired while connecting, before there was a socket to shut down
            raise _DeadlineExceeded
        conn.request("GET", target.prefix + path, headers=HEADERS)
        response = conn.getresponse()
        body = response.read(MAX_BODY_BYTES) if read_body else b""
        if expired.is_set():
            raise _DeadlineExceeded
        return response.status, body
    except TimeoutError as exc:
        raise _DeadlineExceeded from exc
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise _DeadlineExceeded from exc
        raise
    finally:
        watchdog.cancel()
        conn.close()


def _node_version(target: _Target, *, deadline: float) -> str:
    """``node_version`` from ``GET /eigen/node``, or "" when it does not answer that in time and in shape."""
    try:
        status, body = _get(target, NODE_PATH, deadline=deadline, read_body=True)
        document = json.loads(body) if status == 200 else None
    except (_DeadlineExceeded, OSError, http.client.HTTPException, ValueError):
        return ""
    version = document.get("node_version") if isinstance(document, dict) else None
    return version.strip()[:NODE_VERSION_MAX] if isinstance(version, str) else ""


def _failure(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, socketlib.gaierror):
        return f"cannot resolve host: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def probe_operator(*, socket: str, timeout: float) -> ProbeResult:
    """Probe the node API at ``socket``; returns within about ``timeout`` seconds whatever the node does."""
    started = time.monotonic()
    deadline = started + timeout

    def down(error: str) -> ProbeResult:
        return ProbeResult(
            state=OperatorState.DOWN, error=error[:ERROR_MAX], latency=time.monotonic() - started
        )

    try:
        target = _target_parse(socket)
    except ValueError as exc:
        return down(str(exc))
    try:
        status, _ = _get(target, HEALTH_PATH, deadline=deadline, read_body=False)
    except _DeadlineExceeded:
        return down(f"no answer within {timeout:g}s")
    except (OSError, http.client.HTTPException) as exc:
        return down(_failure(exc))
    latency = time.monotonic() - started
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
