"""Go's ``net/rpc`` over HTTP with the default gob codec: the protocol Aligned's operators and aggregator speak.

The client opens a TCP connection and sends ``CONNECT /_goRPC_ HTTP/1.0`` and a blank line; the server answers
``HTTP/1.0 200 Connected to Go RPC`` and a blank line. From then on each direction is one gob stream. A call is
``Request{ServiceMethod string; Seq uint64}`` followed by its argument; its answer is
``Response{ServiceMethod string; Seq uint64; Error string}`` followed by the reply, or by an empty struct when
``Error`` is set (which the client then returns as the call's error). Seq is the client's, from 0 per connection.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from controlplane.gob import STRING, UINT, Decoder, Encoder, GobError, GobType, Struct

logger = logging.getLogger("controlplane.netrpc")

RPC_PATH = "/_goRPC_"
CONNECTED = "200 Connected to Go RPC"
REQUEST = Struct("Request", (("ServiceMethod", STRING), ("Seq", UINT)))
RESPONSE = Struct("Response", (("ServiceMethod", STRING), ("Seq", UINT), ("Error", STRING)))
INVALID_REQUEST = Struct("struct {}")
MAX_HANDSHAKE_BYTES = 4096


class RpcError(Exception):
    """The peer answered the call with an error string (net/rpc's ServerError)."""


class ProtocolError(Exception):
    """The peer does not speak net/rpc (or stopped in the middle): the connection is closed."""


@dataclass(frozen=True)
class Outcome:
    """What a method answers: a reply of ``reply_type``, or an error string (then the reply is not sent)."""

    reply: Any = None
    reply_type: GobType = UINT
    error: str = ""


Method = Callable[[Any], Outcome]


def _read_head(rfile: BinaryIO) -> list[str]:
    """The lines of an HTTP head, up to its blank line (bounded: a peer can't make us read forever)."""
    lines: list[str] = []
    size = 0
    while True:
        line = rfile.readline(MAX_HANDSHAKE_BYTES)
        size += len(line)
        if not line:
            raise ProtocolError("connection closed during the handshake")
        if size > MAX_HANDSHAKE_BYTES:
            raise ProtocolError("handshake too long")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return lines
        lines.append(text)


# --- Server -------------------------------------------------------------------------------------------


def serve_connection(conn: socket.socket, *, methods: dict[str, Method], peer: str) -> int:
    """Serve one client until it hangs up; returns how many calls were answered. Never raises for the peer's
    sake: a handshake or stream it gets wrong is logged once and ends its connection."""
    rfile = conn.makefile("rb")
    answered = 0
    try:
        head = _read_head(rfile)
        request_line = head[0].split() if head else []
        if len(request_line) != 3 or request_line[0] != "CONNECT" or request_line[1] != RPC_PATH:
            conn.sendall(
                b"HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\r\n405 must CONNECT\n"
            )
            raise ProtocolError(f"not a net/rpc handshake: {head[0][:80]!r}" if head else "empty handshake")
        conn.sendall(f"HTTP/1.0 {CONNECTED}\n\n".encode())
        decoder = Decoder(rfile.read)
        encoder = Encoder()
        while True:
            try:
                _, header = decoder.value()
            except EOFError as exc:
                if str(exc) != "stream ended":
                    raise ProtocolError(str(exc)) from None
                return answered  # a clean hang-up between calls
            if not isinstance(header, dict) or not isinstance(header.get("ServiceMethod", ""), str):
                raise ProtocolError("the call's header is not a net/rpc Request")
            name, seq = str(header.get("ServiceMethod", "")), int(header.get("Seq", 0))
            try:
                _, argument = decoder.value()
            except EOFError as exc:
                raise ProtocolError(f"{exc}, in the argument of {name}") from None
            method = methods.get(name)
            outcome = method(argument) if method else Outcome(error=f"rpc: can't find method {name}")
            answer = {"ServiceMethod": name, "Seq": seq, "Error": outcome.error}
            body = (
                encoder.message(INVALID_REQUEST, {})
                if outcome.error
                else encoder.message(outcome.reply_type, outcome.reply)
            )
            conn.sendall(encoder.message(RESPONSE, answer) + body)
            answered += 1
    except (ProtocolError, GobError) as exc:
        logger.warning("net/rpc client %s: %s; closing its connection", peer, exc)
        return answered
    except OSError as exc:
        logger.info("net/rpc client %s: connection lost (%s)", peer, exc)
        return answered
    finally:
        rfile.close()


class RpcServer(socketserver.ThreadingTCPServer):
    """A net/rpc server: one thread per connection (a Go client dials once and keeps its connection).

    ``methods_for(peer)`` gives the methods a connection from ``peer`` may call.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # every operator dials at once when the server (re)starts

    def __init__(
        self,
        host: str,
        port: int,
        *,
        methods_for: Callable[[str], dict[str, Method]],
    ) -> None:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer = str(self.client_address[0])
                serve_connection(self.request, methods=server.methods_for(peer), peer=peer)

        self.methods_for = methods_for
        super().__init__((host, port), Handler)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # To the log, not to stderr: whatever escaped a connection's handler.
        logger.error("net/rpc connection from %s failed", client_address[0], exc_info=True)


def rpc_serve(
    *,
    host: str,
    port: int,
    methods_for: Callable[[str], dict[str, Method]],
    name: str = "net-rpc",
) -> tuple[RpcServer, threading.Thread]:
    """Listen (port 0: any free port) and serve on a daemon thread; stop with ``shutdown()`` and
    ``server_close()``."""
    server = RpcServer(host, port, methods_for=methods_for)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
    )
    thread.start()
    return server, thread


# --- Client -------------------------------------------------------------------------------------------


class Client:
    """One net/rpc connection to a server (``rpc.DialHTTP``); calls are made one at a time."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._rfile = self._sock.makefile("rb")
        self._seq = 0
        self._lock = threading.Lock()
        try:
            self._sock.sendall(f"CONNECT {RPC_PATH} HTTP/1.0\n\n".encode())
            head = _read_head(self._rfile)
            status = head[0].split(" ", 1)[1] if head and " " in head[0] else ""
            if status != CONNECTED:
                raise ProtocolError(f"unexpected HTTP response: {head[0][:80] if head else ''!r}")
        except BaseException:
            self.close()
            raise
        self._decoder = Decoder(self._rfile.read)
        self._encoder = Encoder()

    def call(self, method: str, argument_type: GobType, argument: Any) -> Any:
        """The reply of ``method(argument)``; RpcError for the server's error string, ProtocolError or
        OSError when the connection fails (then this client is closed and a new one is needed)."""
        with self._lock:
            seq = self._seq
            self._seq += 1
            try:
                self._sock.sendall(
                    self._encoder.message(REQUEST, {"ServiceMethod": method, "Seq": seq})
                    + self._encoder.message(argument_type, argument)
                )
                _, header = self._decoder.value()
                _, reply = self._decoder.value()
            except (EOFError, GobError) as exc:
                self.close()
                raise ProtocolError(f"{method}: {exc}") from None
            except OSError:
                self.close()
                raise
            if not isinstance(header, dict) or int(header.get("Seq", 0)) != seq:
                self.close()
                raise ProtocolError(f"{method}: answer out of sequence")
            error = str(header.get("Error", ""))
            if error:
                raise RpcError(error)
            return reply

    def close(self) -> None:
        try:
            self._rfile.close()
        finally:
            self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
