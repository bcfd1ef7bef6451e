from __future__ import annotations

from devnet.anvil import pid_alive, start_anvil


def test_it_starts_anvil_and_stops_it_by_pid():
    node = start_anvil()
    assert node.rpc("eth_chainId") == hex(31337)
    assert pid_alive(node.pid)
    node.stop()
    assert not pid_alive(node.pid)
