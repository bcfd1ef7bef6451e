"""A node serving another chain (a restarted devnet: same chain id, same addresses, new genesis) is refused loudly."""

from __future__ import annotations

import time

import pytest

from devnet.anvil import start_anvil
from ledger.ingest.ledger import ledger_reset
from ledger.ingest.sync import ChainChangedError
from ledger.models import Batch, IngestCursor, IngestIncident, IngestIncidentKind
from tests.chain_fixtures import net_deploy


@pytest.mark.django_db
def test_it_refuses_a_replaced_chain_until_the_ledger_is_reset(anvil):
    first = net_deploy(anvil, seed="same")
    first.create_task(seed=1)
    first.ingester().sync_once()
    assert Batch.objects.count() == 1

    # Anvil's genesis hash depends only on its timestamp: two nodes started in the same second share it.
    replacement = start_anvil(extra_args=["--timestamp", str(int(time.time()) + 1000)])
    try:
        second = net_deploy(replacement, seed="same")
        assert second.service_manager == first.service_manager, "same seed, same addresses"
        second.create_task(seed=2)
        second.create_task(seed=3)
        with pytest.raises(ChainChangedError, match="ingest --reset"):
            second.ingester().sync_once()
        assert IngestIncident.objects.filter(kind=IngestIncidentKind.CHAIN_CHANGED).exists()
        assert Batch.objects.count() == 1, "nothing from the other chain was mixed in"

        ledger_reset(chain_id=31337, reason="test")
        second.ingester().sync_once()
        assert Batch.objects.count() == 2
        genesis = "0x" + bytes(second.w3.eth.get_block(0)["hash"]).hex()
        assert set(IngestCursor.objects.values_list("genesis_hash", flat=True)) == {genesis}
        assert IngestIncident.objects.filter(kind=IngestIncidentKind.LEDGER_RESET).exists()
    finally:
        replacement.stop()
