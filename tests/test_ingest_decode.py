"""Logs built by hand from the published ABIs land in the right ledger fields."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from chain import RawLog
from chain.abi import TOPICS, DecodeError, batch_identifier, decode_log
from ledger.ingest.ledger import ledger_apply
from ledger.models import Batch, BatchStatus, ChainEvent, Operator, OperatorStake

ROOT = "0x" + "ab" * 32
SENDER = "0x" + "12" * 20
OPERATOR = "0x" + "34" * 20
G1 = (1, 2)  # the BN254 generator: a valid key for decoding purposes
G2X = (111, 222)  # EVM order [imag, real]
G2Y = (333, 444)
OPERATOR_ID = "0x" + keccak(G1[0].to_bytes(32, "big") + G1[1].to_bytes(32, "big")).hex()


def topic_address(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def log(topics: list[str], data: bytes, *, block: int, index: int) -> RawLog:
    return RawLog(
        address="0x" + "99" * 20,
        topics=tuple(topics),
        data="0x" + data.hex(),
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        transaction_hash="0x" + f"{block * 1000 + index:064x}",
        transaction_index=0,
        log_index=index,
        removed=False,
    )


def new_batch_v3(block: int = 10, *, pointer: str = "https://data/batch.json") -> RawLog:
    data = encode(["address", "uint32", "string", "uint256"], [SENDER, 9, pointer, 5 * 10**15])
    return log([TOPICS["NewBatchV3"], ROOT], data, block=block, index=0)


def registry_logs(block: int = 5) -> list[RawLog]:
    return [
        log(
            [TOPICS["NewPubkeyRegistration"], topic_address(OPERATOR)],
            encode(["(uint256,uint256)", "(uint256[2],uint256[2])"], [G1, (G2X, G2Y)]),
            block=block,
            index=0,
        ),
        log(
            [TOPICS["OperatorSocketUpdate"], OPERATOR_ID],
            encode(["string"], ["http://op:9000"]),
            block=block,
            index=1,
        ),
        log([TOPICS["OperatorRegistered"], topic_address(OPERATOR), OPERATOR_ID], b"", block=block, index=2),
        log(
            [TOPICS["OperatorStakeUpdate"], OPERATOR_ID],
            encode(["uint8", "uint96"], [0, 7 * 10**18]),
            block=block,
            index=3,
        ),
    ]


@pytest.mark.django_db
def test_it_ingests_a_hand_built_new_batch_v3_into_the_batch_fields():
    summary = ledger_apply(chain_id=1, logs=[new_batch_v3()])
    assert summary.batches_created == 1
    batch = Batch.objects.get()
    assert batch.identifier == batch_identifier(ROOT, SENDER)
    assert batch.identifier == "0x" + keccak(bytes.fromhex(ROOT[2:]) + bytes.fromhex(SENDER[2:])).hex()
    assert batch.merkle_root == ROOT
    assert batch.sender == SENDER
    assert batch.task_created_block == 9
    assert batch.data_pointer == "https://data/batch.json"
    assert batch.fee_limit == 5 * 10**15
    assert batch.created_block == 10
    assert batch.status == BatchStatus.PENDING
    assert batch.event_version == 3


@pytest.mark.django_db
def test_it_stores_tabs_newlines_and_backslashes_in_a_string_exactly():
    # Rows reach Postgres as COPY text, where these characters are the format's own.
    pointer = 'https://data/a\tb\nc\rd\\e\\N"f'
    ledger_apply(chain_id=1, logs=[new_batch_v3(pointer=pointer)])
    assert Batch.objects.get().data_pointer == pointer
    assert ChainEvent.objects.get().args["batchDataPointer"] == pointer


@pytest.mark.django_db
@pytest.mark.parametrize(
    "pointer",
    ["https://data/batch.json", 'https://data/\u00e9t\u00e9/\U0001f600\t"q"', "bad\x00nul", "x" * 5000],
    ids=["plain", "unicode", "nul", "truncated"],
)
def test_it_stores_each_new_batch_event_with_exactly_the_args_it_decoded(pointer):
    # Plain NewBatch args are rebuilt in SQL from the row's columns, unsafe ones sent as JSON: both must match.
    v2 = log(
        [TOPICS["NewBatchV2"], "0x" + "cd" * 32],
        encode(["address", "uint32", "string"], [SENDER, 2**32 - 1, pointer]),
        block=11,
        index=1,
    )
    logs = [new_batch_v3(pointer=pointer), v2]
    ledger_apply(chain_id=1, logs=logs)
    for raw in logs:
        decoded = decode_log(raw.topics, raw.data)
        assert decoded is not None
        assert ChainEvent.objects.get(log_index=raw.log_index).args == decoded.args
    assert ChainEvent.objects.get(log_index=0).args["respondToTaskFeeLimit"] == str(5 * 10**15)


@pytest.mark.django_db
def test_it_ingests_new_batch_v2_and_batch_verified():
    v2 = log(
        [TOPICS["NewBatchV2"], ROOT],
        encode(["address", "uint32", "string"], [SENDER, 3, "s3://bucket/b"]),
        block=4,
        index=0,
    )
    verified = log([TOPICS["BatchVerified"], ROOT], encode(["address"], [SENDER]), block=6, index=1)
    ledger_apply(chain_id=1, logs=[v2, verified])
    batch = Batch.objects.get()
    assert batch.event_version == 2
    assert batch.fee_limit is None
    assert batch.status == BatchStatus.VERIFIED
    assert batch.verified_block == 6
    assert batch.verified_tx == verified.transaction_hash


@pytest.mark.django_db
def test_it_ingests_registry_events_into_the_operator_and_its_stake_history():
    ledger_apply(chain_id=1, logs=registry_logs())
    operator = Operator.objects.get()
    assert operator.operator_id == OPERATOR_ID
    assert operator.address == OPERATOR
    assert operator.pubkey_g1 == {"X": "0x" + f"{1:064x}", "Y": "0x" + f"{2:064x}"}
    assert operator.pubkey_g2 == {
        "X": ["0x" + f"{111:064x}", "0x" + f"{222:064x}"],
        "Y": ["0x" + f"{333:064x}", "0x" + f"{444:064x}"],
    }
    assert operator.socket == "http://op:9000"
    assert operator.registered
    assert operator.registered_block == 5
    assert operator.current_stake == 7 * 10**18
    stake = OperatorStake.objects.get()
    assert (stake.operator_id, stake.stake, stake.block_number) == (OPERATOR_ID, 7 * 10**18, 5)


@pytest.mark.django_db
def test_it_changes_nothing_when_the_same_logs_are_ingested_twice():
    logs = [*registry_logs(), new_batch_v3()]
    first = ledger_apply(chain_id=1, logs=logs)
    second = ledger_apply(chain_id=1, logs=logs)
    assert first.events == 5
    assert second.events == 0
    assert ChainEvent.objects.count() == 5
    assert Batch.objects.count() == 1
    assert OperatorStake.objects.count() == 1


@pytest.mark.django_db
def test_it_keeps_a_deregistered_operator_with_zero_stake():
    operator_logs = registry_logs()
    later = [
        log(
            [TOPICS["OperatorStakeUpdate"], OPERATOR_ID],
            encode(["uint8", "uint96"], [0, 0]),
            block=8,
            index=0,
        ),
        log([TOPICS["OperatorDeregistered"], topic_address(OPERATOR), OPERATOR_ID], b"", block=8, index=1),
    ]
    ledger_apply(chain_id=1, logs=[*operator_logs, *later])
    operator = Operator.objects.get()
    assert not operator.registered
    assert operator.deregistered_block == 8
    assert operator.current_stake == 0


@pytest.mark.parametrize(
    ("topics", "data"),
    [
        ([TOPICS["NewBatchV3"], ROOT], "0x1234"),
        ([TOPICS["NewBatchV3"]], "0x" + "00" * 160),
        ([TOPICS["BatchVerified"], ROOT], "0x" + "ff" * 32),
        (
            [TOPICS["OperatorStakeUpdate"], OPERATOR_ID],
            "0x" + encode(["uint8", "uint256"], [0, 2**100]).hex(),
        ),
    ],
)
def test_it_refuses_malformed_logs_with_a_decode_error(topics, data):
    with pytest.raises(DecodeError):
        decode_log(tuple(topics), data)


@pytest.mark.django_db
def test_it_keeps_malformed_logs_out_of_the_ledger_and_says_so(caplog):
    bad = log([TOPICS["NewBatchV3"], ROOT], b"\x01\x02", block=3, index=0)
    summary = ledger_apply(chain_id=1, logs=[bad, new_batch_v3()])
    assert summary.undecodable == 1
    assert Batch.objects.count() == 1
    assert "undecodable NewBatchV3 log" in caplog.text
    # Recorded as what it is, with why, and applied to nothing.
    recorded = ChainEvent.objects.get(name="undecodable")
    assert recorded.args == {"event": "NewBatchV3", "reason": "log data too short for word 0"}


def test_it_ignores_topics_it_does_not_ingest():
    assert decode_log(("0x" + "11" * 32,), "0x") is None


@pytest.mark.django_db
def test_it_keeps_a_stake_update_of_another_quorum_as_history_only():
    other_quorum = log(
        [TOPICS["OperatorStakeUpdate"], OPERATOR_ID], encode(["uint8", "uint96"], [1, 9]), block=3, index=0
    )
    ledger_apply(chain_id=1, logs=[other_quorum])
    assert not Operator.objects.exists()
    assert list(OperatorStake.objects.values_list("quorum_number", "stake")) == [(1, 9)]
    ledger_apply(chain_id=1, logs=registry_logs())
    assert Operator.objects.get().current_stake == 7 * 10**18  # quorum 0's, not quorum 1's


@pytest.mark.django_db
def test_it_applies_a_chunks_registry_events_in_a_constant_number_of_queries(django_assert_max_num_queries):
    # Three operators, each registered with a socket and a stake: four events apiece, one chunk.
    logs = []
    for n, (x, y) in enumerate([(1, 2), (3, 4), (5, 6)]):
        operator_id = "0x" + keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big")).hex()
        address = "0x" + f"{n + 1:040x}"
        logs += [
            log(
                [TOPICS["NewPubkeyRegistration"], topic_address(address)],
                encode(["(uint256,uint256)", "(uint256[2],uint256[2])"], [(x, y), (G2X, G2Y)]),
                block=5,
                index=4 * n,
            ),
            log(
                [TOPICS["OperatorSocketUpdate"], operator_id],
                encode(["string"], ["http://op"]),
                block=5,
                index=4 * n + 1,
            ),
            log(
                [TOPICS["OperatorRegistered"], topic_address(address), operator_id],
                b"",
                block=5,
                index=4 * n + 2,
            ),
            log(
                [TOPICS["OperatorStakeUpdate"], operator_id],
                encode(["uint8", "uint96"], [0, 10**18]),
                block=5,
                index=4 * n + 3,
            ),
        ]
    with django_assert_max_num_queries(8):
        ledger_apply(chain_id=1, logs=logs)
    assert Operator.objects.filter(registered=True, socket="http://op", current_stake=10**18).count() == 3
    assert OperatorStake.objects.count() == 3
