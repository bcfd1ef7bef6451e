"""The devnet's aggregator: collects operators' BLS signatures per batch and answers the task on chain.

Like Aligned's aggregator it keeps tasks and partial aggregates **in memory only** (deliberately: losing them
on a crash is one of the failures the control plane exists to repair), learns of tasks by following
NewBatchV3 from the chain head *at its start* (batches created while it was down are never picked up),
and forgets a task that has not reached quorum within a window (100 s by default).

HTTP JSON on 127.0.0.1:``state["aggregator"]["port"]``:

- ``POST /signatures``: one signed task response (Aligned's JSON). 200 ``accepted``/``duplicate``/
  ``responded`` is the explicit acknowledgement; 404 ``unknown_task``, 410 ``task_expired``,
  403 ``not_an_operator``, 400 ``invalid_signature`` (or a parse error), 413 for a body over 4 KB,
  503 ``chain_unavailable``.
- ``POST /tasks``: announce a task (the control plane's replay): ``created``/``exists``/``responded``,
  404 ``unknown_batch`` when the chain has no such batch.
- ``GET /health``: boot id, start time and every task held, so a restart is visible.

When the signers hold at least 67% of the stake at ``taskCreatedBlock`` a background worker submits
``respondToTaskV2`` (one submission at a time, so nonces never race), never for a batch the chain already
shows as responded, retrying transport failures with the same nonce and a fee bumped x1.25.
"""

from __future__ import annotations

from devnet.aggregator.common import AggregatorConfig, HttpError, Task
from devnet.aggregator.node import AggregatorNode, run_aggregator

__all__ = ["AggregatorConfig", "AggregatorNode", "HttpError", "Task", "run_aggregator"]
