"""Ledger rows for tests, written through the ORM: every Batch, Operator and stake row has its ChainEvent."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from eth_utils import keccak

from ledger.models import Batch, BatchStatus, ChainEvent, Operator, OperatorStake

CHAIN_ID = 31337
SERVICE_MANAGER = "0x" + "11" * 20
REGISTRY = "0x" + "22" * 20
ETH = 10**18

_sequence = itertools.count(1)


def hex32(label: str) -> str:
    """A deterministic 0x + 64 hex value per label."""
    return "0x" + keccak(text=label).hex()


def address(label: str) -> str:
    return "0x" + keccak(text=label).hex()[:40]


def chain_event(
    *,
    name: str,
    block_number: int,
    subject: str = "",
    args: dict[str, Any] | None = None,
    log_index: int | None = None,
    contract: str = REGISTRY,
    removed: bool = False,
) -> ChainEvent:
    n = next(_sequence)
    return ChainEvent.objects.create(
        chain_id=CHAIN_ID,
        block_number=block_number,
        block_hash=hex32(f"block-{block_number}"),
        log_index=n if log_index is None else log_index,
        transaction_hash=hex32(f"tx-{n}"),
        transaction_index=0,
        address=contract,
        topic0=hex32(name),
        name=name,
        subject=subject,
        args=args or {},
        removed=removed,
    )


def batch_create(
    *,
    label: str | None = None,
    created_block: int = 100,
    status: str = BatchStatus.PENDING,
    verified_block: int | None = None,
    fee_limit: int | None = 10**15,
    **fields: Any,
) -> Batch:
    label = label or f"batch-{next(_sequence)}"
    identifier = fields.pop("identifier", hex32(f"id-{label}"))
    merkle_root = fields.pop("merkle_root", hex32(f"root-{label}"))
    sender = fields.pop("sender", address("sender"))
    event = chain_event(
        name="NewBatchV3",
        block_number=created_block,
        subject=identifier,
        contract=SERVICE_MANAGER,
        args={"batchMerkleRoot": merkle_root, "senderAddress": sender},
    )
    verified_tx = ""
    if verified_block is not None:
        verified_tx = chain_event(
            name="BatchVerified", block_number=verified_block, subject=identifier, contract=SERVICE_MANAGER
        ).transaction_hash
        status = BatchStatus.VERIFIED
    return Batch.objects.create(
        identifier=identifier,
        merkle_root=merkle_root,
        sender=sender,
        task_created_block=fields.pop("task_created_block", created_block - 1),
        data_pointer=fields.pop("data_pointer", f"http://127.0.0.1:9/batches/{label}.json"),
        fee_limit=None if fee_limit is None else Decimal(fee_limit),
        event_version=fields.pop("event_version", 3),
        status=status,
        created_block=created_block,
        created_tx=event.transaction_hash,
        verified_block=verified_block,
        verified_tx=verified_tx,
        **fields,
    )


def operator_create(
    *,
    label: str,
    stake: int = 0,
    registered: bool = True,
    registered_block: int = 10,
    socket: str | None = None,
    **fields: Any,
) -> Operator:
    """An operator with its registration event and, when ``stake`` is given, a stake update at registration."""
    operator_id = fields.pop("operator_id", hex32(f"operator-{label}"))
    operator_address = fields.pop("address", address(f"operator-{label}"))
    chain_event(
        name="OperatorRegistered",
        block_number=registered_block,
        subject=operator_id,
        args={"operator": operator_address, "operatorId": operator_id},
    )
    operator = Operator.objects.create(
        operator_id=operator_id,
        address=operator_address,
        pubkey_g1=fields.pop("pubkey_g1", {"X": hex32(f"g1x-{label}"), "Y": hex32(f"g1y-{label}")}),
        pubkey_g2=fields.pop(
            "pubkey_g2",
            {
                "X": [hex32(f"g2xi-{label}"), hex32(f"g2xr-{label}")],
                "Y": [hex32(f"g2yi-{label}"), hex32(f"g2yr-{label}")],
            },
        ),
        socket=socket if socket is not None else f"http://127.0.0.1:9/{label}",
        registered=registered,
        registered_block=registered_block,
        current_stake=Decimal(stake),
        **fields,
    )
    if stake:
        stake_update(operator_id=operator_id, stake=stake, block_number=registered_block, set_current=False)
    return operator


def stake_update(
    *,
    operator_id: str,
    stake: int,
    block_number: int,
    log_index: int | None = None,
    removed: bool = False,
    quorum_number: int = 0,
    set_current: bool = True,
) -> OperatorStake:
    """An OperatorStakeUpdate event and its stake-history row; also the operator's current stake unless told."""
    event = chain_event(
        name="OperatorStakeUpdate",
        block_number=block_number,
        subject=operator_id,
        log_index=log_index,
        removed=removed,
        args={"operatorId": operator_id, "quorumNumber": quorum_number, "stake": str(stake)},
    )
    row = OperatorStake.objects.create(
        operator_id=operator_id,
        quorum_number=quorum_number,
        stake=Decimal(stake),
        block_number=block_number,
        log_index=event.log_index,
        event=event,
        removed=removed,
    )
    if set_current and not removed and quorum_number == 0:
        Operator.objects.filter(operator_id=operator_id).update(current_stake=Decimal(stake))
    return row
