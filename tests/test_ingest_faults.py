"""Provider errors on eth_getLogs: the range shrinks, ingest completes, nothing is missing."""

from __future__ import annotations

import logging

import pytest

from devnet.faultproxy import FaultProxy
from ledger.models import Batch, ChainEvent
from tests.chain_fixtures import net_deploy


@pytest.mark.django_db
def test_it_shrinks_the_range_on_provider_errors_and_misses_nothing(anvil, caplog):
    net = net_deploy(anvil)
    roots = {"0x" + net.create_task(seed=i).hex() for i in range(25)}
    caplog.set_level(logging.WARNING)
    with FaultProxy(anvil.url, max_log_range=4, fail_every=5) as proxy:
        ingester = net.ingester(url=proxy.url, initial_range=64)
        report = ingester.sync_once()
        assert proxy.faults > 0
        window = ingester.windows[net.service_manager]
        assert window.size < 64
    assert set(Batch.objects.values_list("merkle_root", flat=True)) == roots
    assert ChainEvent.objects.filter(name="NewBatchV3").count() == 25
    assert report.target == anvil_head(net)
    assert "shrinks" in caplog.text


def anvil_head(net) -> int:
    return int(net.w3.eth.block_number)
