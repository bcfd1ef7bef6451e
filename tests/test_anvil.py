from __future__ import annotations

from devnet.anvil import free_port, pid_alive, start_anvil


def test_it_starts_anvil_and_stops_it_by_pid():
    node = start_anvil()
    assert node.rpc("eth_chainId") == hex(31337)
    assert pid_alive(node.pid)
    node.stop()
    assert not pid_alive(node.pid)


def test_it_never_hands_out_the_same_free_port_twice_in_a_row_of_servers() -> None:
    # A devnet draws a port per operator, the aggregator (HTTP and net/rpc) and the batcher before any binds.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
