"""The intake over Go's net/rpc: what an unmodified Aligned operator calls when pointed at the control plane.

``Aggregator.ProcessOperatorSignedTaskResponseV2`` goes through the same checks and the same durable store as
``POST /api/v1/signatures``. It replies 0 only once the signature's row is committed (a retry of a stored
signature is a duplicate, and replies 0 too). Every case where nothing was stored is a net/rpc error string,
which an upstream operator retries (10 tries, 10 s apart). ``Aggregator.ServerRunning`` replies 1.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connection

from controlplane.gob import INT
from controlplane.netrpc import Method, Outcome, RpcServer, rpc_serve
from intake.parse import IntakeError
from intake.services import signature_receive
from intake.wire import METHOD, PING, signed_response_from_gob

logger = logging.getLogger("intake")


def signature_receive_gob(*, argument: Any, source: str) -> Outcome:
    """One ProcessOperatorSignedTaskResponseV2 call: reply 0 once stored, else an error string to retry on."""
    try:
        _, result = signature_receive(source=source, parse=lambda: signed_response_from_gob(argument))
    except IntakeError as exc:
        if exc.status == 429:
            return Outcome(error=f"rate limited: {exc.message}; retry later")
        if exc.status >= 500:
            return Outcome(error=exc.message)
        where = f" ({exc.field})" if exc.field else ""
        return Outcome(error=f"refused{where}: {exc.message}")
    finally:
        # Back to the pool after every call: an operator keeps its connection (and this thread) for as long as it
        # runs, and the pool has a few database connections for all of them.
        connection.close()
    logger.debug("net/rpc signature from %s: %s (%s)", source, result.status, result.signature_id)
    return Outcome(reply=0)


def _methods_for(peer: str) -> dict[str, Method]:
    return {
        METHOD: lambda argument: signature_receive_gob(argument=argument, source=peer),
        PING: lambda _: Outcome(reply=1, reply_type=INT),
    }


def _connection_close() -> None:
    # A function, not ``connection.close``: that would bind the DatabaseWrapper of the thread that started the
    # server, and each connection's thread must close its own.
    connection.close()


def rpc_server_start(*, host: str, port: int) -> tuple[RpcServer, threading.Thread]:
    """Serve the intake over net/rpc on a thread; stop it with ``server.shutdown()`` then ``server_close()``."""
    # Each connection's thread gives back its database connection when the operator hangs up.
    return rpc_serve(
        host=host, port=port, methods_for=_methods_for, on_close=_connection_close, name="intake-rpc"
    )
