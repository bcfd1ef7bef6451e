"""The standby responder's task: answer one batch on chain, with the aggregator's key, exactly once.

Each attempt, in order:
1. the chain is the judge: a batch already responded is done, by us if one of our transactions for it
   succeeded (whichever of a nonce's replacements was mined), else by someone else (the aggregator);
2. a transaction of ours still in flight is waited for, and replaced with raised fees (same nonce) once it has
   waited STANDBY_BUMP_SECONDS;
3. otherwise the call is built, simulated with eth_call (a revert is recorded and the task stops: it is not
   retried blindly; ``BatchAlreadyResponded`` is a success), sent with the next nonce, and its receipt awaited.

The aggregator signs with the same key, so a nonce of ours can be taken by one of its transactions: a
transaction whose nonce was used by another is forgotten, and the batch's state decides what happens next.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chain.client import ChainClient
from chain.contracts import BatchState, batches_state_data, batches_state_decode, revert_decode
from chain.errors import RpcError
from chain.transactions import (
    Fees,
    Receipt,
    account_from_key,
    call_simulate,
    fees_suggest,
    gas_estimate,
    nonce_get,
    receipt_get,
    transaction_send,
    transaction_sign,
)
from controlplane.locks import lock_key
from ledger.models import Batch, BatchStatus
from recovery.models import RecoveryTask, ResponseTransaction
from recovery.services.standby import (
    NotAnswerable,
    Standby,
    response_build,
    response_simulate,
    standby_config,
)
from recovery.services.tasks import Outcome

logger = logging.getLogger("recovery")

# The gas estimate plus a fifth: the estimate is exact only for the state it ran on.
GAS_MARGIN = Decimal("1.2")
RECEIPT_POLL_SECONDS = 0.25
ANSWERED_BY_STANDBY = "standby"
ANSWERED_BY_OTHER = "other"


def _batch_state(client: ChainClient, standby: Standby, identifier: str) -> BatchState:
    answer = call_simulate(
        client, sender=None, to=standby.service_manager, data=batches_state_data(identifier=identifier)
    )
    if answer.reverted:
        raise RpcError(None, f"batchesState reverted: {revert_decode(answer.data).text}", "eth_call")
    return batches_state_decode(answer.data)


def _receipts_check(client: ChainClient, identifier: str) -> ResponseTransaction | None:
    """Look up the receipt of each of our unmined transactions for the batch; the one that succeeded, if any."""
    for row in ResponseTransaction.objects.filter(batch_identifier=identifier, mined_block__isnull=True):
        receipt = receipt_get(client, row.tx_hash)
        if receipt is not None:
            _record_receipt(row, receipt)
    return ResponseTransaction.objects.filter(batch_identifier=identifier, succeeded=True).first()


def _record_receipt(row: ResponseTransaction, receipt: Receipt) -> None:
    row.mined_block = receipt.block_number
    row.succeeded = receipt.succeeded
    row.fee_paid = Decimal(receipt.gas_used * receipt.effective_gas_price)
    row.save(update_fields=["mined_block", "succeeded", "fee_paid"])


def _in_flight(client: ChainClient, standby: Standby, identifier: str) -> ResponseTransaction | None:
    """Our latest unmined transaction for the batch whose nonce is still unused on chain, if any."""
    row = (
        ResponseTransaction.objects.filter(batch_identifier=identifier, mined_block__isnull=True)
        .order_by("-nonce", "-sent_at")
        .first()
    )
    if row is None:
        return None
    if nonce_get(client, standby.sender, block="latest") > row.nonce:
        return None  # the nonce was used by another transaction (the aggregator's, with the same key)
    return row


def _answered(row: ResponseTransaction) -> Outcome:
    return Outcome.done(
        f"answered by the standby in tx {row.tx_hash} (block {row.mined_block})",
        answered_by=ANSWERED_BY_STANDBY,
        tx_hash=row.tx_hash,
        block=row.mined_block,
    )


def _answered_elsewhere(detail: str) -> Outcome:
    return Outcome.done(detail, answered_by=ANSWERED_BY_OTHER)


def _send(
    *,
    client: ChainClient,
    standby: Standby,
    task: RecoveryTask,
    data: str,
    replacing: ResponseTransaction | None,
) -> ResponseTransaction:
    """Sign and send ``data`` to the service manager: with ``replacing``'s nonce and raised fees, or the next nonce.

    Nonces are handed out under a transaction-scoped advisory lock, so two workers never pick the same one.
    """
    account = account_from_key(standby.private_key)
    # A replacement keeps its gas: an estimate on the pending state would meet the transaction it replaces.
    gas = (
        replacing.gas
        if replacing is not None
        else int(
            Decimal(gas_estimate(client, sender=standby.sender, to=standby.service_manager, data=data))
            * GAS_MARGIN
        )
    )
    suggested = fees_suggest(client)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(f"standby-nonce:{standby.sender}")])
        if replacing is not None:
            nonce = replacing.nonce
            previous = Fees(int(replacing.max_fee_per_gas), int(replacing.priority_fee_per_gas)).bumped()
            fees = Fees(
                max_fee=max(previous.max_fee, suggested.max_fee),
                priority_fee=max(previous.priority_fee, suggested.priority_fee),
            )
        else:
            nonce = nonce_get(client, standby.sender, block="pending")
            fees = suggested
        signed = transaction_sign(
            account,
            chain_id=int(client.chain_id()),
            nonce=nonce,
            to=standby.service_manager,
            data=data,
            gas=gas,
            fees=fees,
        )
        transaction_send(client, signed)
        return ResponseTransaction.objects.create(
            batch_identifier=task.subject,
            task=task,
            sender=standby.sender,
            nonce=nonce,
            tx_hash=signed.hash,
            gas=gas,
            max_fee_per_gas=fees.max_fee,
            priority_fee_per_gas=fees.priority_fee,
        )


def _await(
    *, client: ChainClient, standby: Standby, row: ResponseTransaction, seconds: float
) -> Outcome | None:
    """Wait up to ``seconds`` for any of our transactions for the batch to be mined; None if none was."""
    deadline = time.monotonic() + seconds
    while True:
        winner = _receipts_check(client, row.batch_identifier)
        if winner is not None:
            return _answered(winner)
        failed = (
            ResponseTransaction.objects.filter(
                batch_identifier=row.batch_identifier, nonce=row.nonce, succeeded=False
            )
            .order_by("-mined_block")
            .first()
        )
        if failed is not None:
            return _mined_failure(client=client, standby=standby, row=failed)
        if time.monotonic() >= deadline:
            return None
        time.sleep(RECEIPT_POLL_SECONDS)


def _mined_failure(*, client: ChainClient, standby: Standby, row: ResponseTransaction) -> Outcome:
    """A transaction of ours mined and failed: replay it on the state before its block to learn why."""
    batch = Batch.objects.get(identifier=row.batch_identifier)
    try:
        plan = response_build(batch=batch, client=client, standby=standby)
        replay = call_simulate(
            client,
            sender=standby.sender,
            to=standby.service_manager,
            data=plan.data,
            block=max(int(row.mined_block or 1) - 1, 0),
        )
        revert = revert_decode(replay.data) if replay.reverted else None
    except NotAnswerable as exc:
        revert = None
        why = str(exc)
    else:
        why = (
            revert.text if revert else "mined and failed (out of gas, or the state changed within the block)"
        )
    if revert is not None and revert.name == "BatchAlreadyResponded":
        return _answered_elsewhere(
            f"tx {row.tx_hash} found the batch already answered: someone else responded first"
        )
    if _batch_state(client, standby, row.batch_identifier).responded:
        return _answered_elsewhere(f"tx {row.tx_hash} failed, but the batch was answered by someone else")
    return Outcome.cancel(f"respondToTaskV2 tx {row.tx_hash} failed on chain: {why}")


def respond_execute(task: RecoveryTask) -> Outcome:
    batch = Batch.objects.filter(identifier=task.subject).first()
    if batch is None or batch.status == BatchStatus.ORPHANED:
        return Outcome.cancel(
            f"the batch is {batch.status if batch else 'unknown'}: there is no task to answer"
        )
    standby, missing = standby_config()
    if standby is None:
        return Outcome.retry(missing)
    client = ChainClient(standby.rpc_url, max_attempts=3)
    try:
        return _respond(task=task, batch=batch, client=client, standby=standby)
    except RpcError as exc:
        return Outcome.retry(f"chain: {exc}")
    finally:
        client.close()


def _respond(*, task: RecoveryTask, batch: Batch, client: ChainClient, standby: Standby) -> Outcome:
    winner = _receipts_check(client, batch.identifier)
    if winner is not None:
        return _answered(winner)
    state = _batch_state(client, standby, batch.identifier)
    if not state.exists:
        return Outcome.cancel("the chain has no such batch (reorged out?)")
    if state.responded or batch.status == BatchStatus.VERIFIED:
        return _answered_elsewhere("the batch was answered on chain by someone else (the aggregator)")

    flying = _in_flight(client, standby, batch.identifier)
    if flying is not None:
        waited = (timezone.now() - flying.sent_at).total_seconds()
        bump_in = float(settings.STANDBY_BUMP_SECONDS) - waited
        if bump_in > 0:
            outcome = _await(
                client=client,
                standby=standby,
                row=flying,
                seconds=min(bump_in, float(settings.STANDBY_RECEIPT_WAIT)),
            )
            return outcome or Outcome.retry(
                f"tx {flying.tx_hash} (nonce {flying.nonce}) not mined yet", tx_hash=flying.tx_hash
            )

    try:
        plan = response_build(batch=batch, client=client, standby=standby)
    except NotAnswerable as exc:
        return Outcome.cancel(f"not answerable: {exc}")
    simulated = response_simulate(plan=plan, client=client, standby=standby)
    if simulated.reverted:
        revert = revert_decode(simulated.data)
        if revert.name == "BatchAlreadyResponded":
            return _answered_elsewhere("the batch was answered on chain by someone else (simulation)")
        # Recorded and shown, never retried blindly: the planner asks again only once more signatures arrive.
        logger.error("standby response to batch %s would revert: %s", batch.identifier, revert.text)
        return Outcome.cancel(
            f"the simulated respondToTaskV2 reverts: {revert.text}",
            revert=revert.text,
            signers=len(plan.signers),
        )

    row = _send(client=client, standby=standby, task=task, data=plan.data, replacing=flying)
    what = "replaced" if flying is not None else "sent"
    logger.warning(
        "standby %s respondToTaskV2 for batch %s: tx %s nonce %d (%d signers, %.1f%% of stake)",
        what,
        batch.identifier,
        row.tx_hash,
        row.nonce,
        len(plan.signers),
        plan.signed_percentage,
    )
    outcome = _await(client=client, standby=standby, row=row, seconds=float(settings.STANDBY_RECEIPT_WAIT))
    return outcome or Outcome.retry(
        f"tx {row.tx_hash} (nonce {row.nonce}) {what}, not mined yet", tx_hash=row.tx_hash
    )
