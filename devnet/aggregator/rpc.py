"""The aggregator's Go net/rpc server, with Aligned's semantics, for operators that send over gob.

``ProcessOperatorSignedTaskResponseV2`` replies 0 once the signature counts towards its task. A nil signature is
an error (reply 1). A signature for a task this aggregator does not know is held for ``unknown_task_wait``
seconds, in case the task is just late, then dropped with reply 1 and no error: upstream's operator ignores the
reply, so the signature is lost for good. Any other refusal (an invalid signature, an expired task) is also a
silent reply of 1. ``ServerRunning`` replies 1.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from controlplane.gob import INT
from controlplane.netrpc import Method, Outcome
from devnet.aggregator.common import HttpError
from devnet.aggregator.signatures import Signatures
from intake.parse import IntakeError
from intake.wire import METHOD, PING, signed_response_from_gob

logger = logging.getLogger("devnet.aggregator")


class RpcApi(Signatures):
    """What operators' net/rpc calls do here: the same path as ``POST /signatures``."""

    def _rpc_methods(self, peer: str) -> dict[str, Method]:
        return {METHOD: self.signature_receive_gob, PING: lambda _: Outcome(reply=1, reply_type=INT)}

    def signature_receive_gob(self, argument: Any) -> Outcome:
        try:
            response = signed_response_from_gob(argument)
        except IntakeError as exc:
            if exc.field == "BlsSignature" and "nil signature" in exc.message:
                return Outcome(error="invalid response: nil signature")
            logger.warning("net/rpc signature refused: %s", exc.message)
            return Outcome(reply=1)
        deadline = time.monotonic() + self.config.unknown_task_wait
        while True:
            try:
                self.signature_accept(response)
                return Outcome(reply=0)
            except HttpError as exc:
                code = exc.body.get("code")
                if code == "unknown_task" and time.monotonic() < deadline and not self._stop.is_set():
                    self._stop.wait(0.2)  # the task may be on its way (the follower polls the chain)
                    continue
                if code == "unknown_task":
                    logger.warning(
                        "net/rpc signature of %s for unknown task %s: dropped (reply 1)",
                        response.operator_id[:10],
                        response.batch_identifier,
                    )
                else:
                    logger.info("net/rpc signature refused (%s): reply 1", code)
                return Outcome(reply=1)
