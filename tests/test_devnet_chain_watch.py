"""What the scenarios and benches read off the chain: each batch created after a block, and its verification."""

from __future__ import annotations

from devnet.contracts import batch_identifier
from devnet.scenarios import ChainWatch
from tests.chain_fixtures import net_deploy


def test_it_reads_the_batches_created_after_a_block_and_their_verifications(anvil):
    net = net_deploy(anvil, operators=3)
    watch = ChainWatch({"rpc_url": anvil.url, "contracts": net.state["contracts"]})
    before = watch.head()
    first = net.create_task(seed=1)
    middle = watch.head()
    second = net.create_task(seed=2)
    net.respond(root=first, signers=[0, 1, 2])  # the first batch's BatchVerified comes after the second batch
    sender = net.account("batcher").address.lower()
    ids = ["0x" + batch_identifier(batch_merkle_root=root, sender=sender).hex() for root in (first, second)]

    everything = watch.outcomes(after=before)
    assert [b.identifier for b in everything] == ids
    assert [(b.verifications, b.lost) for b in everything] == [(1, False), (0, True)]
    assert [b.identifier for b in watch.outcomes(after=middle)] == ids[1:]
    assert watch.outcomes(after=watch.head()) == []  # nothing after the head: no range to read
