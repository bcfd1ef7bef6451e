"""The standby responder's plan: EigenLayer's NonSignerStakesAndSignature for a batch, built from Postgres.

Signers are the operators whose signature on the batch is verified here; non-signers every other operator
registered at ``taskCreatedBlock``, sorted by id. Keys and stakes at that block come from the ingested registry
events; only the history indices come from the chain (the OperatorStateRetriever), which also refuses a
non-signer that was not registered then, so a ledger that disagrees with the chain never gets to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from bls import G1Point, G2Point, InvalidPoint, aggregate_g1, aggregate_g2
from chain.client import ChainClient
from chain.contracts import (
    NonSignerStakesAndSignature,
    check_signatures_indices_data,
    check_signatures_indices_decode,
    respond_to_task_v2_data,
    revert_decode,
)
from chain.transactions import Simulation, account_from_key, call_simulate
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, Operator
from ledger.selectors import operator_stakes_at_block, operators_registered_at_block
from progress.quorum import quorum_threshold, stake_holds_quorum, stake_percent


class NotAnswerable(Exception):
    """What the standby can't answer for this batch now, in words for the task's audit trail."""


@dataclass(frozen=True)
class Standby:
    """Where and as whom the standby answers; None from ``standby_config`` names what is missing."""

    rpc_url: str
    service_manager: str
    registry_coordinator: str
    retriever: str
    private_key: str

    @property
    def sender(self) -> str:
        return str(account_from_key(self.private_key).address).lower()


def standby_config() -> tuple[Standby | None, str]:
    """The standby's settings, or None and the names of those missing (a dry run works without STANDBY_RESPONDER)."""
    needed = {
        "CHAIN_RPC_URL": settings.CHAIN_RPC_URL,
        "SERVICE_MANAGER_ADDRESS": settings.SERVICE_MANAGER_ADDRESS,
        "REGISTRY_ADDRESSES": settings.REGISTRY_ADDRESSES[0] if settings.REGISTRY_ADDRESSES else None,
        "OPERATOR_STATE_RETRIEVER_ADDRESS": settings.OPERATOR_STATE_RETRIEVER_ADDRESS,
        "AGGREGATOR_PRIVATE_KEY_FILE": settings.AGGREGATOR_PRIVATE_KEY,
    }
    missing = [name for name, value in needed.items() if not value]
    if missing:
        return None, f"the standby responder needs {', '.join(missing)}"
    return (
        Standby(
            rpc_url=str(needed["CHAIN_RPC_URL"]),
            service_manager=str(needed["SERVICE_MANAGER_ADDRESS"]),
            # EigenLayer's retriever takes the registry coordinator: the first registry address.
            registry_coordinator=str(needed["REGISTRY_ADDRESSES"]),
            retriever=str(needed["OPERATOR_STATE_RETRIEVER_ADDRESS"]),
            private_key=str(needed["AGGREGATOR_PRIVATE_KEY_FILE"]),
        ),
        "",
    )


@dataclass(frozen=True)
class ResponsePlan:
    batch: Batch
    signers: tuple[str, ...]
    non_signers: tuple[str, ...]
    signed_stake: Decimal
    total_stake: Decimal
    params: NonSignerStakesAndSignature
    data: str

    @property
    def signed_percentage(self) -> float:
        return stake_percent(part=self.signed_stake, total=self.total_stake)

    def as_json(self) -> dict[str, Any]:
        return {
            "batchMerkleRoot": self.batch.merkle_root,
            "senderAddress": self.batch.sender,
            "taskCreatedBlock": self.batch.task_created_block,
            "signers": list(self.signers),
            "nonSigners": list(self.non_signers),
            "signedStake": str(self.signed_stake),
            "totalStake": str(self.total_stake),
            "signedPercentage": round(self.signed_percentage, 2),
            "nonSignerStakesAndSignature": self.params.as_json(),
        }


def _by_operator(signatures: list[Signature]) -> dict[str, G1Point]:
    """One verified signature per operator (BLS signatures are deterministic: any one of them is the one)."""
    points: dict[str, G1Point] = {}
    for signature in signatures:
        if signature.operator_id not in points:
            points[signature.operator_id] = G1Point.from_hex(
                {"X": signature.signature_x, "Y": signature.signature_y}
            )
    return points


def response_build(*, batch: Batch, client: ChainClient, standby: Standby) -> ResponsePlan:
    """The respondToTaskV2 call for ``batch``; NotAnswerable says why there is none."""
    reference = int(batch.task_created_block)
    registered = operators_registered_at_block(block_number=reference)
    if not registered:
        raise NotAnswerable(f"no operator was registered at block {reference}")
    operators = {o.operator_id: o for o in Operator.objects.filter(operator_id__in=registered)}
    try:
        g1 = {operator_id: G1Point.from_hex(operators[operator_id].pubkey_g1) for operator_id in registered}
    except (KeyError, InvalidPoint) as exc:
        raise NotAnswerable(f"a registered operator's key is unknown here ({exc})") from None
    signatures = _by_operator(
        [
            s
            for s in Signature.objects.filter(
                batch_identifier=batch.identifier, status=SignatureStatus.VERIFIED
            ).order_by("id")
            if s.operator_id in registered
        ]
    )
    stakes = operator_stakes_at_block(block_number=reference)
    total = sum(stakes.values(), Decimal(0))
    signed = sum((stakes.get(operator_id, Decimal(0)) for operator_id in signatures), Decimal(0))
    threshold = quorum_threshold()
    if not signatures or not stake_holds_quorum(signed=signed, total=total, threshold=threshold):
        share = f"{stake_percent(part=signed, total=total):.1f}%" if total else "none"
        raise NotAnswerable(
            f"verified signatures hold {share} of the stake at block {reference}, under {threshold}%"
        )
    signers = tuple(sorted(signatures, key=lambda i: int(i, 16)))
    non_signers = tuple(sorted(registered - set(signatures), key=lambda i: int(i, 16)))
    try:
        apk_g2 = aggregate_g2(G2Point.from_hex(operators[s].pubkey_g2) for s in signers)
    except InvalidPoint as exc:
        raise NotAnswerable(f"a signer's G2 key is unusable ({exc})") from None

    asked = call_simulate(
        client,
        sender=None,
        to=standby.retriever,
        data=check_signatures_indices_data(
            registry=standby.registry_coordinator, reference_block=reference, non_signer_ids=non_signers
        ),
    )
    if asked.reverted:
        raise NotAnswerable(
            f"the OperatorStateRetriever refused the indices: {revert_decode(asked.data).text}"
        )
    indices = check_signatures_indices_decode(asked.data)
    params = NonSignerStakesAndSignature(
        non_signer_quorum_bitmap_indices=indices.non_signer_quorum_bitmap_indices,
        non_signer_pubkeys=tuple(g1[n].to_evm() for n in non_signers),
        quorum_apks=(aggregate_g1(g1.values()).to_evm(),),
        apk_g2=apk_g2.to_evm(),
        sigma=aggregate_g1(signatures[s] for s in signers).to_evm(),
        quorum_apk_indices=indices.quorum_apk_indices,
        total_stake_indices=indices.total_stake_indices,
        non_signer_stake_indices=indices.non_signer_stake_indices,
    )
    return ResponsePlan(
        batch=batch,
        signers=signers,
        non_signers=non_signers,
        signed_stake=signed,
        total_stake=total,
        params=params,
        data=respond_to_task_v2_data(merkle_root=batch.merkle_root, sender=batch.sender, params=params),
    )


def response_simulate(*, plan: ResponsePlan, client: ChainClient, standby: Standby) -> Simulation:
    """The call as the aggregator's address, on the latest state."""
    return call_simulate(client, sender=standby.sender, to=standby.service_manager, data=plan.data)
