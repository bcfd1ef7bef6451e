"""Real reorgs (anvil_reorg): orphaned rows are kept and marked removed, derived state follows the new chain."""

from __future__ import annotations

import pytest

from ledger.ingest.sync import DeepReorgError
from ledger.models import Batch, BatchStatus, ChainEvent, IngestCursor, IngestIncident, IngestIncidentKind
from tests.chain_fixtures import Net, net_deploy, replacement_task


def head_hash(net: Net) -> str:
    return "0x" + bytes(net.w3.eth.get_block("latest")["hash"]).hex()


@pytest.mark.django_db
def test_it_marks_an_orphaned_new_batch_removed_and_ingests_the_replacement(anvil):
    net = net_deploy(anvil)
    orphan_root = "0x" + net.create_task(seed=1).hex()
    ingester = net.ingester()
    ingester.sync_once()
    assert Batch.objects.get(merkle_root=orphan_root).status == BatchStatus.PENDING

    raw, new_root = replacement_task(net, seed=2)
    anvil.rpc("anvil_reorg", [1, [[raw, 0]]])
    report = ingester.sync_once()

    assert report.reorgs >= 1
    orphan = Batch.objects.get(merkle_root=orphan_root)
    assert orphan.status == BatchStatus.ORPHANED
    event = ChainEvent.objects.get(subject=orphan.identifier)
    assert event.removed
    assert event.removed_at is not None
    replacement = Batch.objects.get(merkle_root="0x" + new_root.hex())
    assert replacement.status == BatchStatus.PENDING
    assert ChainEvent.objects.get(subject=replacement.identifier).removed is False
    cursor = IngestCursor.objects.get(address=net.service_manager)
    assert cursor.block_number == net.w3.eth.block_number
    assert cursor.block_hash == head_hash(net)
    incident = IngestIncident.objects.get(kind=IngestIncidentKind.REORG, address=net.service_manager)
    assert incident.depth == 1


@pytest.mark.django_db
def test_it_turns_a_batch_back_to_pending_when_its_batch_verified_is_orphaned(anvil):
    net = net_deploy(anvil)
    root = net.create_task(seed=3)
    net.respond(root=root, signers=[1, 2])
    ingester = net.ingester()
    ingester.sync_once()
    batch = Batch.objects.get(merkle_root="0x" + root.hex())
    assert batch.status == BatchStatus.VERIFIED
    assert batch.verified_block == net.w3.eth.block_number

    anvil.rpc("anvil_reorg", [1, []])  # the block holding BatchVerified becomes an empty one
    ingester.sync_once()

    batch.refresh_from_db()
    assert batch.status == BatchStatus.PENDING
    assert batch.verified_block is None
    assert batch.verified_tx == ""
    verified = ChainEvent.objects.get(subject=batch.identifier, name="BatchVerified")
    assert verified.removed
    assert not ChainEvent.objects.get(subject=batch.identifier, name="NewBatchV3").removed
    assert IngestCursor.objects.get(address=net.service_manager).block_hash == head_hash(net)


@pytest.mark.django_db
def test_it_never_ingests_what_a_reorg_within_the_confirmation_depth_drops(anvil):
    net = net_deploy(anvil)
    root = "0x" + net.create_task(seed=4).hex()
    ingester = net.ingester(confirmations=2)
    ingester.sync_once()
    assert not Batch.objects.filter(merkle_root=root).exists()

    raw, new_root = replacement_task(net, seed=5)
    anvil.rpc("anvil_reorg", [1, [[raw, 0]]])
    anvil.rpc("anvil_mine", ["0x2"])
    report = ingester.sync_once()

    assert report.reorgs == 0
    assert not Batch.objects.filter(merkle_root=root).exists()
    assert Batch.objects.filter(merkle_root="0x" + new_root.hex(), status=BatchStatus.PENDING).exists()
    assert not ChainEvent.objects.filter(removed=True).exists()


@pytest.mark.django_db
def test_it_stops_loudly_on_a_reorg_deeper_than_the_blocks_kept(anvil, caplog):
    net = net_deploy(anvil)
    net.create_task(seed=6)
    anvil.rpc("anvil_mine", ["0x20"])
    ingester = net.ingester(blocks_kept=4)
    ingester.sync_once()

    anvil.rpc("anvil_reorg", [10, []])
    with pytest.raises(DeepReorgError):
        ingester.sync_once()

    incident = IngestIncident.objects.get(kind=IngestIncidentKind.DEEP_REORG)
    assert "forked below every kept block" in incident.detail
    assert "DEEP REORG" in caplog.text
