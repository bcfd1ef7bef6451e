"""The devnet's operator process: follows NewBatchV3, checks each batch, BLS-signs the valid ones, sends them.

One ``OperatorNode`` per operator of the devnet file. Its threads:

- a **follower** polls ``eth_getLogs`` on the service manager for NewBatchV3 from the chain head *at its start*
  (like upstream, an operator that was down misses what was created meanwhile); a chain outage is logged and
  retried, never fatal;
- a few **workers** download each batch from its ``batchDataPointer``, check the Merkle root and every proof,
  and sign ``batch_identifier(root, sender)`` only when all of them hold;
- a few **senders** deliver the signed responses (Aligned's JSON) from a due-time queue, so a slow or absent
  receiver never blocks the following or the checking. Normal mode posts to the control plane's intake and
  retries with capped exponential backoff until it is accepted (the control plane is the durable queue);
  ``direct`` mode posts to the aggregator with upstream's policy (10 tries, 10 s apart, then give up);
- an **HTTP server** with the EigenLayer node API (``/eigen/node``, ``/eigen/node/health``,
  ``/eigen/node/services``, ``/eigen/node/services/<id>/health``), Prometheus ``/metrics`` and the
  authenticated ``POST /control/verify`` through which the control plane drives catch-up.
"""

from __future__ import annotations

from devnet.operator.common import BatchTask, OperatorTiming
from devnet.operator.control import ControlRequestError, parse_control_request
from devnet.operator.node import OperatorNode, run_operator

__all__ = [
    "BatchTask",
    "ControlRequestError",
    "OperatorNode",
    "OperatorTiming",
    "parse_control_request",
    "run_operator",
]
