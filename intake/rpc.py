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

from controlplane.gob import INT
from controlplane.netrpc import Method, Outcome, RpcServer, rpc_serve
from intake.groups import signature_groups
from intake.parse import IntakeError
from intake.wire import METHOD, PING, signed_response_from_gob

logger = logging.getLogger("intake")


def signature_receive_gob(*, argument: Any, source: str) -> Outcome:
    """One ProcessOperatorSignedTaskResponseV2 call: reply 0 once stored, else an error string to retry on."""
    # Stored by the process's committers with whatever else arrived (over either wire): this connection's thread
    # holds no database connection, however long the operator stays connected.
    outcome = (
        signature_groups().submit(source=source, parse=lambda: signed_response_from_gob(argument)).result()
    )
    if isinstance(outcome, IntakeError):
        if outcome.status == 429:
            return Outcome(error=f"rate limited: {outcome.message}; retry later")
        if outcome.status >= 500:
            return Outcome(error=outcome.message)
        where = f" ({outcome.field})" if outcome.field else ""
        return Outcome(error=f"refused{where}: {outcome.message}")
    _, result = outcome
    logger.debug("net/rpc signature from %s: %s (%s)", source, result.status, result.signature_id)
    return Outcome(reply=0)


def _methods_for(peer: str) -> dict[str, Method]:
    return {
        METHOD: lambda argument: signature_receive_gob(argument=argument, source=peer),
        PING: lambda _: Outcome(reply=1, reply_type=INT),
    }


def rpc_server_start(*, host: str, port: int) -> tuple[RpcServer, threading.Thread]:
    """Serve the intake over net/rpc on a thread; stop it with ``server.shutdown()`` then ``server_close()``."""
    return rpc_serve(host=host, port=port, methods_for=_methods_for, name="intake-rpc")
