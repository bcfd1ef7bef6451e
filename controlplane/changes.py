"""The one seam changes flow through: a stage that wrote something announces it, whoever cares listens.

Lower stages (ledger, intake, liveness, progress, recovery, alerts) send these after their writes without
knowing who listens; upper stages connect receivers in their ``AppConfig.ready``. So data flows up and imports
point down. Receivers run at once, inside the sender's transaction: the live relay only registers work for after
the commit; recovery requests its forward tasks in the verifier's transaction, so a verified signature never
lacks one. Each signal's keyword arguments are listed beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.dispatch import Signal

# rows (ledger EventRows of one ingest chunk), new_batch_events (how many NewBatch rows were new), fresh (the
# chunk's other events that were new)
ledger_applied = Signal()
# signature_id, batch_identifier, operator_id, status, stake (at taskCreatedBlock, or None), conflicting
signature_accepted = Signal()
# batch_identifier, signatures ((id, operatorId) pairs), valid_ids, invalid_reasons ({id: reason})
signatures_checked = Signal()
# identifier, progress (the BatchProgress row after a refresh), before (progress_state() of it before)
progress_refreshed = Signal()
# operator_id, state, previous, since
operator_state_changed = Signal()
# run (a RecoveryRun just recorded)
recovery_run_recorded = Signal()
# task (a RecoveryTask), action ("requested", "done", "retry", "cancel"), detail
recovery_task_changed = Signal()
# alert (an Alert), kind ("alert.opened" or "alert.resolved")
alert_changed = Signal()


def change_listen(signal: Signal, listener: Callable[..., object], *, uid: str) -> None:
    """Call ``listener(**data)`` for each announcement on ``signal`` (once per ``uid``, however often asked)."""

    def receive(*, sender: object, signal: object, **data: Any) -> None:
        listener(**data)

    signal.connect(receive, weak=False, dispatch_uid=uid)


def change_announce(signal: Signal, **data: Any) -> None:
    """Tell every receiver of ``signal`` (none is fine); a receiver's error is the sender's, as for a call."""
    signal.send(sender=None, **data)
