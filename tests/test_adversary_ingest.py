"""Hostile chain data never stops ingest: anyone can call createNewTask, and anyone can emit a log that looks like
one of ours from a contract we follow. Every log here is real, on a real anvil chain."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from chain import ChainClient
from chain.abi import TOPICS
from devnet import contracts
from devnet.anvil import Anvil, start_anvil
from ledger.ingest.ledger import UNDECODABLE
from ledger.ingest.sync import ContractSpec, IngestConfig, Ingester
from ledger.models import Batch, ChainEvent, IngestCursor, Operator
from tests.chain_fixtures import net_deploy

pytestmark = pytest.mark.django_db


def _init(runtime: bytes) -> bytes:
    """Init code that CODECOPYs ``runtime`` (which follows these 11 bytes) into memory and RETURNs it."""
    return bytes([0x60, len(runtime), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3]) + runtime


def emitter_code(topics: int) -> bytes:
    """A contract that, on any call, emits LOG<topics> with the first ``topics`` 32-byte words of the calldata as
    topics and the rest as data: any log shape, from a real contract. Hand-assembled."""
    runtime = bytes.fromhex("366000600037")  # CALLDATASIZE PUSH1 0 PUSH1 0 CALLDATACOPY: memory = calldata
    for i in reversed(range(topics)):
        runtime += bytes([0x60, 32 * i, 0x51])  # PUSH1 32i MLOAD: topic i (the last one pushed first)
    runtime += bytes([0x60, 32 * topics, 0x36, 0x03])  # PUSH1 32k CALLDATASIZE SUB: data size
    runtime += bytes([0x60, 32 * topics, 0xA0 + topics, 0x00])  # PUSH1 32k (offset) LOGk STOP
    return _init(runtime)


# Calldata: topic0, topic1, a size, then the data's head; it emits LOG2 with ``size`` bytes of data from the head
# on, zeros past the calldata: a megabyte log from a small transaction (a node refuses megabyte transactions).
PADDED_EMITTER = _init(bytes.fromhex("3660006000376020516000516040516060a200"))


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def string_tail(value: bytes) -> bytes:
    padded = value + b"\0" * (-len(value) % 32)
    return word(len(value)) + padded


def new_batch_v3_data(*, pointer: bytes, sender: int = 0xABC, block: int = 5, fee: int = 10**15) -> bytes:
    return word(sender) + word(block) + word(4 * 32) + word(fee) + string_tail(pointer)


class Emitters:
    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil
        self.sender = anvil.rpc("eth_accounts")[0]  # type: ignore[index]
        self.by_topics = {k: self._deploy(emitter_code(k)) for k in (1, 2, 3)}
        self.padded = self._deploy(PADDED_EMITTER)

    def _wait(self, tx: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (receipt := self.anvil.rpc("eth_getTransactionReceipt", [tx])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert isinstance(receipt, dict)
        assert receipt["status"] == "0x1", receipt
        return receipt

    def _deploy(self, code: bytes) -> str:
        tx = self.anvil.rpc("eth_sendTransaction", [{"from": self.sender, "data": "0x" + code.hex()}])
        return str(self._wait(tx)["contractAddress"]).lower()

    def emit(self, topics: list[str], data: bytes, *, padded_to: int | None = None) -> None:
        calldata = b"".join(bytes.fromhex(t[2:]) for t in topics) + data
        to = self.by_topics[len(topics)]
        if padded_to is not None:
            calldata = calldata[:64] + word(padded_to) + calldata[64:]
            to = self.padded
        call = {"from": self.sender, "to": to, "data": "0x" + calldata.hex(), "gas": hex(10**9)}
        self._wait(self.anvil.rpc("eth_sendTransaction", [call]))

    def ingester(self) -> Ingester:
        addresses = [*self.by_topics.values(), self.padded]
        specs = [ContractSpec(address=a, kind="service_manager", start_block=1) for a in addresses]
        client = ChainClient(self.anvil.url, backoff_base=0.01, backoff_cap=0.05)
        return Ingester(client=client, config=IngestConfig(chain_id=31337, contracts=specs, confirmations=0))


@pytest.fixture
def big_anvil() -> Iterator[Anvil]:
    node = start_anvil(extra_args=["--gas-limit", "2000000000"])  # room for megabyte logs
    try:
        yield node
    finally:
        node.stop()


def root(label: str) -> str:
    return "0x" + keccak(label.encode()).hex()


def test_it_stores_nul_bytes_bad_utf8_and_megabyte_strings_escaped_and_capped(big_anvil: Anvil) -> None:
    emit = Emitters(big_anvil)
    v3 = TOPICS["NewBatchV3"]
    emit.emit([v3, root("nul")], new_batch_v3_data(pointer=b"http://x/\x00\x00evil"))
    emit.emit([v3, root("utf8")], new_batch_v3_data(pointer=b"http://x/\xff\xfe\xc3("))
    # A string that says it is 3 MiB long, of NUL bytes, in a 3 MiB log.
    head = word(0xABC) + word(5) + word(4 * 32) + word(10**15) + word(3 * 1024 * 1024)
    emit.emit([v3, root("huge")], head, padded_to=len(head) + 3 * 1024 * 1024)

    report = emit.ingester().sync_once()

    assert report.batches_created == 3
    pointers = {b.merkle_root: b.data_pointer for b in Batch.objects.all()}
    assert pointers[root("nul")] == "http://x/\\x00\\x00evil"
    assert pointers[root("utf8")] == "http://x/\\xff\\xfe\\xc3("
    assert pointers[root("huge")] == "\\x00" * 1024
    notes = {
        e.args["batchMerkleRoot"]: e.args["_unsafe"]["batchDataPointer"] for e in ChainEvent.objects.all()
    }
    assert notes[root("nul")] == "NUL bytes escaped"
    assert notes[root("utf8")] == "not UTF-8 (bytes escaped as \\xNN)"
    assert notes[root("huge")] == "NUL bytes escaped; truncated from 3145728 bytes to 4096 characters"


def test_it_records_malformed_logs_as_undecodable_and_goes_on_to_the_next(big_anvil: Anvil) -> None:
    emit = Emitters(big_anvil)
    v3, verified = TOPICS["NewBatchV3"], TOPICS["BatchVerified"]
    emit.emit([v3], new_batch_v3_data(pointer=b"p"))  # a topic missing: no batchMerkleRoot
    emit.emit([v3, root("short")], word(0xABC))  # data too short
    emit.emit(
        [v3, root("range")], new_batch_v3_data(pointer=b"p", block=2**40)
    )  # taskCreatedBlock is a uint32
    emit.emit([verified, root("dirty")], word(2**200))  # an address word with high bits set
    emit.emit([v3, root("offset")], word(0xABC) + word(5) + word(2**255) + word(1))  # string offset nonsense
    emit.emit(
        [v3, root("fine"), root("extra")], new_batch_v3_data(pointer=b"http://ok")
    )  # an extra topic is ok
    emit.emit([v3, root("after")], new_batch_v3_data(pointer=b"http://ok"))

    ingester = emit.ingester()
    ingester.sync_once()

    undecodable = list(ChainEvent.objects.filter(name=UNDECODABLE).order_by("block_number"))
    assert [e.args["event"] for e in undecodable] == ["NewBatchV3"] * 3 + ["BatchVerified", "NewBatchV3"]
    reasons = [e.args["reason"] for e in undecodable]
    assert reasons[0] == "log has no topic 1"
    assert "too short" in reasons[1]
    assert "uint32 word out of range" in reasons[2]
    assert "dirty high bits" in reasons[3]
    assert "string offset out of range" in reasons[4]
    assert set(Batch.objects.values_list("merkle_root", flat=True)) == {root("fine"), root("after")}
    head = int(str(big_anvil.rpc("eth_blockNumber")), 16)
    assert set(IngestCursor.objects.values_list("block_number", flat=True)) == {head}, (
        "nothing held ingest up"
    )
    ingester.sync_once()  # and again: nothing changes, nothing is duplicated
    assert ChainEvent.objects.count() == 7


def test_it_takes_a_nul_pointer_and_socket_from_the_real_contracts(anvil: Anvil) -> None:
    net = net_deploy(anvil, operators=1)
    contracts.create_task(
        net.w3,
        service_manager=net.service_manager,
        batcher=net.account("batcher"),
        batch_merkle_root=b"\x42" * 32,
        data_pointer="http://evil/\x00",
        fee_limit=10**15,
    )
    operator = net.state["operators"][0]
    contracts.update_socket(
        net.w3,
        registry=net.registry,
        account=Account.from_key(operator["private_key"]),
        socket="http://\x00host:1",
    )
    net.create_task(seed=9)  # an ordinary batch after the poisoned ones

    net.ingester().sync_once()

    assert Batch.objects.get(merkle_root="0x" + "42" * 32).data_pointer == "http://evil/\\x00"
    assert Batch.objects.count() == 2
    assert Operator.objects.get(operator_id=operator["operator_id"]).socket == "http://\\x00host:1"
