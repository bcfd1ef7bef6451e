"""The responder: respondToTaskV2 once a task holds 67% of the stake, SUBMIT_THREADS tasks at a time."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from bls import G1Point, G2Point
from devnet import contracts
from devnet.aggregator.common import (
    FEE_BUMP_DENOMINATOR,
    FEE_BUMP_NUMERATOR,
    PRIORITY_FEE,
    RESUBMIT_DELAY,
    SUBMIT_ATTEMPTS,
    _GaveUp,
    _percent,
    _revert_error,
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
        w3 = self._w3()
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
            params = self._params(w3, task_created_block, dict(zip(signers, signatures, strict=True)))
        except (ContractRevertError, SignerNotInStateError) as exc:
            logger.error("cannot build the response for batch %s (%s): %s", root, stake_text, exc)
            self._submission_over(identifier, resubmit=False)
            return
        except Exception as exc:
            logger.warning("batch %s: cannot build its response yet (%s); will try again", root, _short(exc))
            self._submission_over(identifier, resubmit=True)
            return
        function = contracts.service_manager_contract(
            w3, self.config.service_manager
        ).functions.respondToTaskV2(
            bytes.fromhex(root[2:]), Web3.to_checksum_address(sender), params.to_abi()
        )
        try:
            receipt = self._send_with_retries(w3, function, identifier=identifier, root=root)
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
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        self._mark_responded(identifier, tx_hash)
        self._submission_over(identifier, resubmit=False)
        logger.info("batch %s responded in tx %s (%s)", root, tx_hash, stake_text)

    def _params(
        self, w3: Web3, task_created_block: int, signatures: dict[str, G1Point]
    ) -> contracts.NonSignerStakesAndSignature:
        """NonSignerStakesAndSignature as eigensdk's aggregation service builds it, for the operator state at
        the task's block."""

        def key_g2(operator_id: bytes) -> G2Point:
            key = self._public_key("0x" + operator_id.hex())
            if key is None:  # signatures are only accepted from operators with a known key
                raise SignerNotInStateError(f"no G2 key for signer 0x{operator_id.hex()}")
            return key

        return nonsigner_params_build(
            w3,
            registry=self.config.registry,
            retriever=self.config.retriever,
            task_created_block=task_created_block,
            signatures={bytes.fromhex(k[2:]): v for k, v in signatures.items()},
            signer_keys_g2=key_g2,
            pubkey_g1=self._pubkey_g1,
        )

    def _pubkey_g1(self, operator_id: bytes) -> G1Point:
        key = self._keys_g1.get(operator_id)
        if key is None:  # keys are bound to their operator id forever: cached
            key = contracts.operator_pubkey_g1(
                self._w3(), registry=self.config.registry, operator_id=operator_id
            )
            self._keys_g1[operator_id] = key
        return key

    def _send_with_retries(
        self, w3: Web3, function: ContractFunction, *, identifier: str, root: str
    ) -> TxReceipt | None:
        """Send ``function`` with one nonce, bumping the fees on transport failures.

        A retry reuses the nonce, so it replaces a transaction stuck in the mempool rather than queueing
        behind it; the send lock is held from the nonce to the end, so no other response takes it meanwhile.
        The gas estimate (the whole response, run on the pending state) comes before the lock. Returns the
        receipt, or None when the batch turned out responded (an earlier attempt was mined). Raises
        ContractRevertError on a revert and _GaveUp after SUBMIT_ATTEMPTS failures.
        """
        base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        max_fee = 2 * base_fee + PRIORITY_FEE
        priority_fee = PRIORITY_FEE
        nonce: int | None = None
        gas: int | None = None
        holding = False
        try:
            for attempt in range(1, SUBMIT_ATTEMPTS + 1):
                try:
                    if gas is None:
                        gas = self._estimate_gas(function)
                    if not holding:
                        self._send_lock.acquire()
                        holding = True
                    if nonce is None:
                        nonce = w3.eth.get_transaction_count(self.account.address, "pending")
                    return self._send_once(
                        w3, function, nonce=nonce, gas=gas, max_fee=max_fee, priority_fee=priority_fee
                    )
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
                    max_fee = max_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR
                    priority_fee = priority_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR
                    logger.warning(
                        "respondToTaskV2 for batch %s failed (%s); retry %d/%d with max fee %.3f gwei",
                        root,
                        _short(exc),
                        attempt + 1,
                        SUBMIT_ATTEMPTS,
                        max_fee / 1e9,
                    )
                    self._stop.wait(0.2 * attempt)
        finally:
            if holding:
                self._send_lock.release()
        raise _GaveUp

    def _estimate_gas(self, function: ContractFunction) -> int:
        try:
            estimate = function.estimate_gas({"from": self.account.address}, block_identifier="pending")
        except ContractLogicError as exc:
            raise _revert_error(exc) from exc
        return int(estimate) * 12 // 10

    def _send_once(
        self, w3: Web3, function: ContractFunction, *, nonce: int, gas: int, max_fee: int, priority_fee: int
    ) -> TxReceipt:
        params: TxParams = {
            "from": self.account.address,
            "chainId": w3.eth.chain_id,
            "nonce": Nonce(nonce),
            "gas": gas,
            "maxFeePerGas": Wei(max_fee),
            "maxPriorityFeePerGas": Wei(min(priority_fee, max_fee)),
            "value": Wei(0),
        }
        tx = function.build_transaction(params)
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = contracts.receipt_wait(w3, tx_hash, timeout=self.config.receipt_timeout)
        if receipt["status"] != 1:
            # Replay on the state before its block to learn why it failed.
            replay: TxParams = {"from": tx["from"], "to": tx["to"], "data": tx["data"], "gas": tx["gas"]}
            try:
                w3.eth.call(replay, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
            except ContractLogicError as exc:
                raise _revert_error(exc, receipt) from exc
            raise ContractRevertError(
                function="respondToTaskV2", error_name=None, receipt=receipt, detail="mined and failed"
            )
        return receipt
