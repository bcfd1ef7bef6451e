"""The intake over Go's net/rpc: what an unmodified Aligned operator calls when pointed at the control plane.

``Aggregator.ProcessOperatorSignedTaskResponseV2`` goes through the same checks and the same durable store as
``POST /api/v1/signatures``. It replies 0 only once the signature's row is committed (a retry of a stored
signature is a duplicate, and replies 0 too). Every case where nothing was stored is a net/rpc error string,
which an upstream operator retries (10 tries, 10 s apart). ``Aggregator.ServerRunning`` replies 1.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from controlplane.clients import Rate, rate_check
from controlplane.gob import INT
from controlplane.netrpc import Outcome, serve_connection
from intake.parse import IntakeError
from intake.services import signature_submit
from intake.wire import METHOD, PING, signed_response_from_gob

logger = logging.getLogger("intake")


def signature_receive_gob(*, argument: Any, source: str) -> Outcome:
    """One ProcessOperatorSignedTaskResponseV2 call: reply 0 once stored, else an error string to retry on."""
    wait = rate_check(key=f"intake:{source}", rate=Rate.parse(settings.INTAKE_RATE), fail_open=True)
    if wait is not None:
        return Outcome(
            error=f"rate limited: more than {settings.INTAKE_RATE} calls from {source}; retry later"
        )
    close_old_connections()
    try:
        response = signed_response_from_gob(argument)
        result = signature_submit(response=response, source=source)
    except IntakeError as exc:
        where = f" ({exc.field})" if exc.field else ""
        return Outcome(error=f"refused{where}: {exc.message}")
    except DatabaseError as exc:
        logger.error("intake storage unavailable: %s", exc)
        return Outcome(error="storage temporarily unavailable; retry")
    logger.debug("net/rpc signature from %s: %s (%s)", source, result.status, result.signature_id)
    return Outcome(reply=0)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        peer = str(self.client_address[0])
        methods = {
            METHOD: lambda argument: signature_receive_gob(argument=argument, source=peer),
            PING: lambda _: Outcome(reply=1, reply_type=INT),
        }
        try:
            serve_connection(self.request, methods=methods, peer=peer)
        finally:
            connection.close()  # this connection's thread is done with its database connection


class RpcServer(socketserver.ThreadingTCPServer):
    """One thread per connection: an operator dials once and keeps its connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


def rpc_server_start(*, host: str, port: int) -> tuple[RpcServer, threading.Thread]:
    """Listen and serve on a thread; stop it with ``server.shutdown()`` then ``server.server_close()``."""
    server = RpcServer(host, port)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return server, thread
