"""The responder: respondToTaskV2 once a task holds 67% of the stake, SUBMIT_THREADS tasks at a time.

Through the chain stage (plain JSON-RPC, ``chain.contracts`` and ``chain.transactions``), as the control plane's
standby responder: web3 cost this process six times the CPU per call, and a restarted aggregator responds to
every batch the control plane replays to it at once.
"""

from __future__ import annotations

import logging
import time

from bls import G1Point, G2Point
from chain import RpcError
from chain.contracts import (
    CheckSignaturesIndices,
    check_signatures_indices_data,
    check_signatures_indices_decode,
    respond_to_task_v2_data,
)
from chain.transactions import (
    Fees,
    Receipt,
    call_simulate,
    fees_suggest,
    gas_estimate,
    is_revert,
    nonce_get,
    receipt_wait,
    transaction_send,
    transaction_sign,
)
from devnet import contracts
from devnet.aggregator.common import (
    FEE_BUMP_DENOMINATOR,
    FEE_BUMP_NUMERATOR,
    RESUBMIT_DELAY,
    SUBMIT_ATTEMPTS,
    _GaveUp,
    _percent,
    _short,
)
from devnet.aggregator.tasks import TaskStore
from devnet.contracts import ContractRevertError
from devnet.nonsigners import SignerNotInStateError, nonsigner_params_build

logger = logging.getLogger("devnet.aggregator")


class Responder(TaskStore):
    """Submits responses on chain, with the same nonce and a bumped fee on transport failures."""

    def _submit_loop(self) -> None:
        while not self._stop.is_set():
            identifier = self._jobs.get()
            if identifier is None:
                return
            try:
                self.submit(identifier)
            except Exception:
                logger.exception("unexpected error while responding to task %s", identifier)
                self._submission_over(identifier, resubmit=True)

    def _submission_over(self, identifier: str, *, resubmit: bool) -> None:
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                task.submitting = False
                if resubmit and not task.responded:
                    task.resubmit_at = time.time() + RESUBMIT_DELAY

    def submit(self, identifier: str) -> None:
        """Respond to one task that has quorum, unless the chain already has a response for it."""
        with self._lock:
            task = self._tasks.get(identifier)
            if task is None or task.responded or task.expired or not task.has_quorum():
                if task is not None:
                    task.submitting = False
                return
            signers = sorted(task.signatures)
            signatures = [task.signatures[s] for s in signers]
            signed, total = task.signed_stake, task.total_stake or 0
            root, sender, task_created_block = task.root, task.sender, task.task_created_block
        try:
            _, responded = self._batch_state(identifier)
        except Exception as exc:
            logger.warning("batch %s: cannot read its state on chain (%s); will try again", root, exc)
            self._submission_over(identifier, resubmit=True)
            return
        if responded:
            logger.info("batch %s is already verified on chain: not responding again", root)
            self._mark_responded(identifier)
            self._submission_over(identifier, resubmit=False)
            return
        stake_text = f"{len(signers)} signers, {_percent(signed, total)} stake"
        try:
            params = self._params(task_created_block, dict(zip(signers, signatures, strict=True)))
        except (ContractRevertError, SignerNotInStateError) as exc:
            logger.error("cannot build the response for batch %s (%s): %s", root, stake_text, exc)
            self._submission_over(identifier, resubmit=False)
            return
        except Exception as exc:
            logger.warning("batch %s: cannot build its response yet (%s); will try again", root, _short(exc))
            self._submission_over(identifier, resubmit=True)
            return
        data = respond_to_task_v2_data(merkle_root=root, sender=sender, params=params.to_chain())
        try:
            receipt = self._send_with_retries(data, identifier=identifier, root=root)
        except _GaveUp:
            self._submission_over(identifier, resubmit=True)
            return
        except ContractRevertError as exc:
            if exc.error_name == "BatchAlreadyResponded":
                logger.info("batch %s was responded by someone else first: not responding again", root)
                self._mark_responded(identifier)
                self._submission_over(identifier, resubmit=False)
            else:
                logger.error(
                    "RESPONSE REVERTED for batch %s (%s): %s; keeping the task, more signatures may fix it",
                    root,
                    stake_text,
                    exc,
                )
                self._submission_over(identifier, resubmit=False)
            return
        if receipt is None:  # the chain shows a response (an earlier attempt of ours was mined)
            logger.info("batch %s responded by an earlier attempt (%s)", root, stake_text)
            self._mark_responded(identifier)
            self._submission_over(identifier, resubmit=False)
            return
        tx_hash = receipt.transaction_hash
        self._mark_responded(identifier, tx_hash)
        self._submission_over(identifier, resubmit=False)
        logger.info("batch %s responded in tx %s (%s)", root, tx_hash, stake_text)

    def _params(
        self, task_created_block: int, signatures: dict[str, G1Point]
    ) -> contracts.NonSignerStakesAndSignature:
        """NonSignerStakesAndSignature as eigensdk's aggregation service builds it, for the operator state at
        the task's block."""

        def key_g2(operator_id: bytes) -> G2Point:
            key = self._public_key("0x" + operator_id.hex())
            if key is None:  # signatures are only accepted from operators with a known key
                raise SignerNotInStateError(f"no G2 key for signer 0x{operator_id.hex()}")
            return key

        def indices(non_signers: list[bytes]) -> CheckSignaturesIndices:
            data = check_signatures_indices_data(
                registry=self.config.registry,
                reference_block=task_created_block,
                non_signer_ids=["0x" + i.hex() for i in non_signers],
            )
            return check_signatures_indices_decode(
                self._eth_call(to=self.config.retriever, data=data, function="getCheckSignaturesIndices")
            )

        return nonsigner_params_build(
            self._w3(),
            registry=self.config.registry,
            retriever=self.config.retriever,
            task_created_block=task_created_block,
            signatures={bytes.fromhex(k[2:]): v for k, v in signatures.items()},
            signer_keys_g2=key_g2,
            pubkey_g1=self._pubkey_g1,
            state=self._operator_state(task_created_block),
            indices=indices,
        )

    def _pubkey_g1(self, operator_id: bytes) -> G1Point:
        key = self._keys_g1.get(operator_id)
        if key is None:  # keys are bound to their operator id forever: cached
            key = contracts.operator_pubkey_g1(
                self._w3(), registry=self.config.registry, operator_id=operator_id
            )
            self._keys_g1[operator_id] = key
        return key

    def _send_with_retries(self, data: str, *, identifier: str, root: str) -> Receipt | None:
        """Send respondToTaskV2 ``data`` with one nonce, bumping the fees on transport failures.

        A retry reuses the nonce, so it replaces a transaction stuck in the mempool rather than queueing
        behind it; the send lock is held from the nonce to the end, so no other response takes it meanwhile.
        The gas estimate (the whole response, run on the pending state) comes before the lock. Returns the
        receipt, or None when the batch turned out responded (an earlier attempt was mined). Raises
        ContractRevertError on a revert and _GaveUp after SUBMIT_ATTEMPTS failures.
        """
        fees = fees_suggest(self._chain())
        nonce: int | None = None
        gas: int | None = None
        holding = False
        try:
            for attempt in range(1, SUBMIT_ATTEMPTS + 1):
                try:
                    if gas is None:
                        gas = self._estimate_gas(data)
                    if not holding:
                        self._send_lock.acquire()
                        holding = True
                    if nonce is None:
                        nonce = nonce_get(self._chain(), self.account.address, block="pending")
                    return self._send_once(data, nonce=nonce, gas=gas, fees=fees)
                except ContractRevertError:
                    raise
                except Exception as exc:
                    if self._stop.is_set():
                        raise _GaveUp from exc
                    try:
                        _, responded = self._batch_state(identifier)
                    except Exception:
                        responded = False
                    if responded:
                        return None
                    if "nonce too low" in str(exc).lower():
                        nonce = None
                    if attempt == SUBMIT_ATTEMPTS:
                        logger.error(
                            "respondToTaskV2 for batch %s failed %d times (last: %s); trying again in %gs",
                            root,
                            attempt,
                            _short(exc),
                            RESUBMIT_DELAY,
                        )
                        raise _GaveUp from exc
                    fees = Fees(
                        max_fee=fees.max_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR,
                        priority_fee=fees.priority_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR,
                    )
                    logger.warning(
                        "respondToTaskV2 for batch %s failed (%s); retry %d/%d with max fee %.3f gwei",
                        root,
                        _short(exc),
                        attempt + 1,
                        SUBMIT_ATTEMPTS,
                        fees.max_fee / 1e9,
                    )
                    self._stop.wait(0.2 * attempt)
        finally:
            if holding:
                self._send_lock.release()
        raise _GaveUp

    def _estimate_gas(self, data: str) -> int:
        try:
            estimate = gas_estimate(
                self._chain(),
                sender=self.account.address,
                to=self.config.service_manager,
                data=data,
                block="pending",
            )
        except RpcError as exc:
            if is_revert(exc):
                raise contracts.revert_error("respondToTaskV2", data=exc.data, message=exc.message) from exc
            raise
        return estimate * 12 // 10

    def _send_once(self, data: str, *, nonce: int, gas: int, fees: Fees) -> Receipt:
        client = self._chain()
        signed = transaction_sign(
            self.account,
            chain_id=self._chain_id(),
            nonce=nonce,
            to=self.config.service_manager,
            data=data,
            gas=gas,
            fees=Fees(max_fee=fees.max_fee, priority_fee=min(fees.priority_fee, fees.max_fee)),
        )
        transaction_send(client, signed)
        receipt = receipt_wait(client, signed.hash, timeout=self.config.receipt_timeout)
        if not receipt.succeeded:
            # Replay on the state before its block to learn why it failed.
            replay = call_simulate(
                client,
                sender=self.account.address,
                to=self.config.service_manager,
                data=data,
                block=max(receipt.block_number - 1, 0),
            )
            if replay.reverted:
                raise contracts.revert_error("respondToTaskV2", data=replay.data, message=replay.message)
            raise ContractRevertError(
                function="respondToTaskV2",
                error_name=None,
                detail=f"tx {receipt.transaction_hash} mined and failed",
            )
        return receipt

    def _chain_id(self) -> int:
        if self._chain_id_value is None:
            self._chain_id_value = int(self._chain().chain_id())
        return self._chain_id_value
