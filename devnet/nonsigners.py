"""The devnet aggregator's NonSignerStakesAndSignature, built the way eigensdk-go's aggregation service does.

For the task's quorum-0 operator state at ``taskCreatedBlock``: the non-signers are the operators in that state
that did not sign, sorted by operator id; the quorum apk is the sum of every such operator's G1 key; apkG2 and
sigma are the signers' sums; the history indices come from OperatorStateRetriever.getCheckSignaturesIndices.
Devnet-only: the control plane builds its own from Postgres.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from bls import G1Point, G2Point, aggregate_g1, aggregate_g2
from devnet import contracts


class SignerNotInStateError(ValueError):
    """A signature from an operator that was not registered in the quorum at the task's block."""


def nonsigner_params_build(
    w3: Web3,
    *,
    registry: str,
    retriever: str,
    task_created_block: int,
    signatures: Mapping[bytes, G1Point],
    signer_keys_g2: Mapping[bytes, G2Point] | Callable[[bytes], G2Point],
    pubkey_g1: Callable[[bytes], G1Point] | None = None,
    state: Sequence[contracts.OperatorState] | None = None,
    indices: Callable[[list[bytes]], contracts.CheckSignaturesIndices] | None = None,
) -> contracts.NonSignerStakesAndSignature:
    """The struct for ``signatures`` (operator id -> verified G1 signature) on one task.

    ``signer_keys_g2`` gives each signer's G2 key; ``pubkey_g1`` each operator's G1 key (default: read from the
    registry; keys never change, so callers may cache); ``state`` the operator state at the task's block, when
    the caller has read it, and ``indices`` getCheckSignaturesIndices for the sorted non-signers (default: both
    read here through ``w3``).
    """
    if state is None:
        state = contracts.operator_state(
            w3, retriever=retriever, registry=registry, block_number=task_created_block
        )
    members = {o.operator_id for o in state}
    strangers = sorted(set(signatures) - members)
    if strangers:
        raise SignerNotInStateError(
            f"not in quorum 0 at block {task_created_block}: {', '.join('0x' + s.hex() for s in strangers)}"
        )
    if not signatures:
        raise ValueError("no signatures")

    def key_g1(operator_id: bytes) -> G1Point:
        if pubkey_g1 is not None:
            return pubkey_g1(operator_id)
        return contracts.operator_pubkey_g1(w3, registry=registry, operator_id=operator_id)

    def key_g2(operator_id: bytes) -> G2Point:
        return signer_keys_g2(operator_id) if callable(signer_keys_g2) else signer_keys_g2[operator_id]

    keys = {o.operator_id: key_g1(o.operator_id) for o in state}
    non_signers = sorted(members - set(signatures))
    found = (
        indices(non_signers)
        if indices is not None
        else contracts.check_signatures_indices(
            w3,
            retriever=retriever,
            registry=registry,
            reference_block=task_created_block,
            non_signer_ids=non_signers,
        )
    )
    signers = sorted(signatures)
    return contracts.NonSignerStakesAndSignature(
        non_signer_quorum_bitmap_indices=found.non_signer_quorum_bitmap_indices,
        non_signer_pubkeys=tuple(keys[i] for i in non_signers),
        quorum_apks=(aggregate_g1(keys.values()),),
        apk_g2=aggregate_g2(key_g2(i) for i in signers),
        sigma=aggregate_g1(signatures[i] for i in signers),
        quorum_apk_indices=found.quorum_apk_indices,
        total_stake_indices=found.total_stake_indices,
        non_signer_stake_indices=found.non_signer_stake_indices,
    )


def respond_with_signatures(
    w3: Web3,
    *,
    service_manager: str,
    registry: str,
    retriever: str,
    aggregator: LocalAccount,
    batch_merkle_root: bytes,
    sender: str,
    signatures: Mapping[bytes, G1Point],
    signer_keys_g2: Mapping[bytes, G2Point],
    gas: int | None = None,
) -> TxReceipt:
    """respondToTaskV2 for a task (its block read from batchesState) with these signers' signatures."""
    identifier = contracts.batch_identifier(batch_merkle_root=batch_merkle_root, sender=sender)
    manager = contracts.service_manager_contract(w3, service_manager)
    task_created_block = int(manager.functions.batchesState(identifier).call()[0])
    params = nonsigner_params_build(
        w3,
        registry=registry,
        retriever=retriever,
        task_created_block=task_created_block,
        signatures=signatures,
        signer_keys_g2=signer_keys_g2,
    )
    return contracts.respond_to_task(
        w3,
        service_manager=service_manager,
        aggregator=aggregator,
        batch_merkle_root=batch_merkle_root,
        sender=sender,
        params=params,
        gas=gas,
    )
