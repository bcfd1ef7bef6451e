"""The next range's eth_getLogs runs while the current one is written; ranges are sized by log count.

Fetching ahead must change nothing the ledger promises: a range a reorg orphaned after it was fetched is never
written, errors surface as they did, the cursor moves only with its rows, and no thread outlives a sync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from web3 import Web3

from chain import BlockHeader, ChainClient, RangeTooLarge
from controlplane.changes import ledger_applied
from devnet import contracts
from devnet.anvil import Anvil
from devnet.faultproxy import FaultProxy
from ledger.ingest.sync import ContractSpec, IngestConfig, Ingester
from ledger.models import Batch, ChainEvent, IngestCursor, IngestIncident
from tests.chain_fixtures import Net, net_deploy, replacement_task


def prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("ingest-prefetch", "ingest-decode"))]


class ReorgAfterFetch(ChainClient):
    """The real client; its clone (the prefetch worker's) reorgs the chain once, right after it fetched the
    headers of a range holding ``block``: the fault a real node cannot be asked to time."""

    def __init__(self, url: str, *, block: int, reorg: Callable[[], object], **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.block = block
        self.reorg = reorg
        self.fired = False

    def clone(self, *, sleep: Callable[[float], None] | None = None) -> ChainClient:
        parent = self

        class Worker(ChainClient):
            def get_blocks(self, numbers: Sequence[int]) -> list[BlockHeader]:
                headers = super().get_blocks(numbers)
                if parent.block in numbers and not parent.fired:
                    parent.fired = True
                    parent.reorg()
                return headers

        return Worker(self.url, backoff_base=0.01, backoff_cap=0.05, sleep=sleep or self._sleep)


@pytest.mark.django_db
def test_it_never_writes_a_prefetched_range_that_a_reorg_orphaned(anvil: Anvil) -> None:
    net = net_deploy(anvil)
    kept = ["0x" + net.create_task(seed=i).hex() for i in range(3)]
    orphan = "0x" + net.create_task(seed=3).hex()
    head = net.w3.eth.block_number
    raw, new_root = replacement_task(net, seed=4)
    client = ReorgAfterFetch(
        anvil.url,
        block=head,
        reorg=lambda: anvil.rpc("anvil_reorg", [1, [[raw, 0]]]),
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    # One log per range: the head block's range is fetched while the ranges before it are written.
    ingester = Ingester(
        client=client,
        config=IngestConfig(chain_id=31337, contracts=net.specs(), confirmations=0, range_logs=1),
    )

    report = ingester.sync_once()

    assert client.fired
    assert not Batch.objects.filter(merkle_root=orphan).exists()
    assert not ChainEvent.objects.filter(removed=True).exists()  # never written, so nothing to roll back
    assert set(Batch.objects.values_list("merkle_root", flat=True)) == {*kept, "0x" + new_root.hex()}
    cursor = IngestCursor.objects.get(address=net.service_manager)
    assert cursor.block_number == head
    assert cursor.block_hash == "0x" + bytes(net.w3.eth.get_block(head)["hash"]).hex()
    assert report.reorgs == 0
    assert not IngestIncident.objects.exists()
    assert prefetch_threads() == []


def dense_blocks(net: Net, *, blocks: int, tasks_per_block: int) -> None:
    """``blocks`` consecutive blocks holding ``tasks_per_block`` real NewBatchV3 logs each."""
    artifact = contracts.load_artifact("LoadBatcher")
    deployer = net.account("deployer")
    factory = net.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = contracts.transact(
        net.w3, factory.constructor(Web3.to_checksum_address(net.service_manager)), account=deployer
    )
    loader = net.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    for block in range(blocks):
        contracts.transact(
            net.w3,
            loader.functions.createTasks(
                block.to_bytes(32, "big"), tasks_per_block, "http://127.0.0.1:1/b.json"
            ),
            account=deployer,
            gas=12_000_000,
        )


@pytest.mark.django_db
def test_it_follows_the_log_density_with_each_range(anvil: Anvil) -> None:
    net = net_deploy(anvil)
    dense_blocks(net, blocks=12, tasks_per_block=50)
    last_dense = net.w3.eth.block_number
    first_dense = last_dense - 11
    anvil.rpc("anvil_mine", [hex(600)])
    net.create_task(seed=1)
    spec = ContractSpec(address=net.service_manager, kind="service_manager", start_block=first_dense)

    with FaultProxy(anvil.url) as proxy:
        client = ChainClient(proxy.url, backoff_base=0.01, backoff_cap=0.05)
        config = IngestConfig(chain_id=31337, contracts=[spec], confirmations=0, range_logs=128)
        Ingester(client=client, config=config).sync_once()
        ranges = list(proxy.log_ranges)

    assert ChainEvent.objects.filter(name="NewBatchV3").count() == 12 * 50 + 1
    assert Batch.objects.count() == 12 * 50 + 1
    # 50 logs a block and 128 wanted: the first range probes 128 // 64 = 2 blocks; the 100 logs it finds say
    # that two blocks hold about 128, so every range over the dense stretch spans two...
    dense = [(lo, hi) for lo, hi in ranges if hi <= last_dense]
    assert dense == [(block, block + 1) for block in range(first_dense, last_dense + 1, 2)]

    # ... and over the empty stretch after it the span grows by far.
    assert max(hi - lo + 1 for lo, hi in ranges if lo > last_dense) >= 128


@pytest.mark.django_db
def test_it_raises_a_refusal_met_by_the_prefetch_as_before_and_leaves_no_thread(anvil: Anvil) -> None:
    net = net_deploy(anvil)
    roots = {"0x" + net.create_task(seed=i).hex() for i in range(8)}
    target = net.w3.eth.block_number

    with FaultProxy(anvil.url) as proxy:
        ingester = net.ingester(url=proxy.url, range_logs=1)

        def refuse_from_now_on(*, rows: Sequence[Any], **_: Any) -> None:
            if rows:  # once a range with a batch is being written, every eth_getLogs is refused
                proxy.max_log_range = 0

        ledger_applied.connect(refuse_from_now_on, dispatch_uid="test-refuse")
        try:
            with pytest.raises(RangeTooLarge):
                ingester.sync_once()
        finally:
            ledger_applied.disconnect(dispatch_uid="test-refuse")
        assert prefetch_threads() == []

        # The cursor moved with the rows it covers, and no further.
        cursor = IngestCursor.objects.get(address=net.service_manager)
        assert cursor.block_number < target
        stored = ChainEvent.objects.filter(address=net.service_manager)
        assert not stored.filter(block_number__gt=cursor.block_number).exists()
        assert 0 < stored.count() < len(roots)

        proxy.max_log_range = None
        ingester.sync_once()

    assert set(Batch.objects.values_list("merkle_root", flat=True)) == roots
    assert ChainEvent.objects.filter(name="NewBatchV3").count() == len(roots)  # exactly once
    assert prefetch_threads() == []
