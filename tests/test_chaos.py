"""The chaos suite: its schedules, its fault injectors, and a short run of the whole thing (3 seeds, every fault
kind) that must lose nothing, every time."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from devnet.anvil import rpc, start_anvil
from devnet.chaos import (
    CONTROL_PLANE_PROCESSES,
    FAULT_KINDS,
    RETRY_WINDOW,
    TASK_WINDOW,
    parse_seeds,
    suite_schedule,
)
from devnet.chaos_suite import chain_reorg
from devnet.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"^chaos: (\d+) seeds, (\d+) batches created, (\d+) verified, (\d+) lost, (\d+) acknowledged signatures lost, "
    r"settle p50/p95/max ([\d.]+)/([\d.]+)/([\d.]+) s$",
    re.MULTILINE,
)


def test_it_makes_the_same_schedule_from_the_same_seed_and_another_from_another() -> None:
    assert suite_schedule(seed=17, duration=60) == suite_schedule(seed=17, duration=60)
    assert suite_schedule(seed=17, duration=60) != suite_schedule(seed=18, duration=60)


@pytest.mark.parametrize("seed", range(1, 21))
def test_it_schedules_every_fault_kind_and_heals_each_by_the_end(seed: int) -> None:
    schedule = suite_schedule(seed=seed, duration=40)
    kinds = {fault.kind for fault in schedule}
    assert kinds == {kind for group in FAULT_KINDS.values() for kind in group}
    assert {f.target for f in schedule if f.kind == "cp-kill"} == set(CONTROL_PLANE_PROCESSES)
    for fault in schedule:
        assert 0 < fault.at <= fault.at + fault.lasts <= 40, fault
    down = next(f for f in schedule if f.kind == "stake-down")
    assert down.target == "operator-4+operator-5"  # 90 of 150 stake: more than a third, across batches
    assert down.lasts >= 12
    outage = next(f for f in schedule if f.kind == "aggregator-outage")
    assert outage.lasts > max(TASK_WINDOW, RETRY_WINDOW)
    assert all(f.mode in ("depth 1", "depth 2") for f in schedule if f.kind == "reorg")
    gone = next(f for f in schedule if f.kind == "aggregator-gone")
    for fault in schedule:
        if fault.kind.startswith("aggregator-") and fault is not gone:
            assert fault.at + fault.lasts <= gone.at, "no aggregator fault heals (starts it) after it is gone"


def test_it_limits_a_schedule_to_one_group_of_faults() -> None:
    for group, kinds in FAULT_KINDS.items():
        assert {f.kind for f in suite_schedule(seed=3, duration=60, faults=group)} <= set(kinds)
    with pytest.raises(ValueError, match="--faults must be one of"):
        suite_schedule(seed=3, duration=60, faults="everything")


def test_it_reads_seeds_as_numbers_and_ranges() -> None:
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("17") == [17]
    assert parse_seeds("3,7,9-11,7") == [3, 7, 9, 10, 11]
    for bad in ("", "a-b", "5-1", "-3"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def test_it_reorgs_the_chain_without_losing_a_transaction_and_mining_goes_on() -> None:
    node = start_anvil()  # a block per transaction: the transaction's block is the head
    try:
        account = rpc(node.url, "eth_accounts")[0]  # type: ignore[index]
        tx = rpc(node.url, "eth_sendTransaction", [{"from": account, "to": account, "value": "0x1"}])
        receipt: Any = None
        deadline = time.monotonic() + 5
        while receipt is None:  # anvil answers before the automined block is indexed: wait for it
            assert time.monotonic() < deadline, "no receipt"
            receipt = rpc(node.url, "eth_getTransactionReceipt", [tx])
        number = int(receipt["blockNumber"], 16)
        assert int(str(rpc(node.url, "eth_blockNumber")), 16) == number
        old_hash = receipt["blockHash"]

        chain_reorg(node.url, depth=1)

        moved: Any = rpc(node.url, "eth_getTransactionReceipt", [tx])
        assert moved is not None, "the transaction is in the new chain"
        assert int(moved["blockNumber"], 16) == number
        assert moved["blockHash"] != old_hash, "a new block: a real reorg"
        head = int(str(rpc(node.url, "eth_blockNumber")), 16)
        time.sleep(2.2)
        assert int(str(rpc(node.url, "eth_blockNumber")), 16) > head, "mining resumed"
    finally:
        node.stop()


def test_it_refuses_then_errors_then_heals_on_the_same_port() -> None:
    node = start_anvil()
    proxy = FaultProxy(node.url).start()
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        assert requests.post(proxy.url, json=call, timeout=2).json()["result"]
        proxy.outage("refuse", 0.6)
        with pytest.raises(requests.ConnectionError):
            requests.post(proxy.url, json=call, timeout=2)
        time.sleep(0.8)
        assert requests.post(proxy.url, json=call, timeout=2).status_code == 200, "listening again, same port"
        proxy.outage("error", 0.6)
        assert requests.post(proxy.url, json=call, timeout=2).status_code == 503
        time.sleep(0.8)
        assert requests.post(proxy.url, json=call, timeout=2).status_code == 200
        # A keep-alive connection opened before a refusal is cut too, not served through it.
        with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))) as conn:
            proxy.outage("refuse", 5)
            conn.settimeout(2)
            try:
                conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                answer = conn.recv(100)
            except ConnectionResetError:
                answer = b""  # cut hard rather than closed: cut either way
            assert answer == b""
        proxy.heal()
        assert requests.post(proxy.url, json=call, timeout=2).status_code == 200
    finally:
        proxy.stop()
        node.stop()


@pytest.mark.slow
def test_it_loses_nothing_under_every_kind_of_fault(tmp_path: Path) -> None:
    env = {**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for key in (
        "CHAIN_RPC_URL",
        "SERVICE_MANAGER_ADDRESS",
        "REGISTRY_ADDRESSES",
        "START_BLOCK",
        "DEVNET_FILE",
    ):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "devnet", "chaos", "--seeds", "1-3", "--duration", "40"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = done.stdout + done.stderr
    print(output)
    assert done.returncode == 0, output
    match = SUMMARY.search(done.stdout)
    assert match, output
    seeds, created, verified, lost, acks_lost = (int(g) for g in match.groups()[:5])
    assert (seeds, lost, acks_lost) == (3, 0, 0), output
    assert created == verified > 0, output
    assert len(re.findall(r"^seed \d+: ok: ", done.stdout, re.MULTILINE)) == 3, output
    assert done.stdout.strip().splitlines()[-1] == match.group(0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "7"], "devnet chaos --seed N needs --duration SECONDS"),
        (["--seeds", "1-x"], "--seeds takes numbers and ranges such as 1-50"),
        (["--seeds", "3", "--duration", "5"], "--duration must be at least 10 seconds"),
        (["--seeds", "3", "--faults", "everything"], "invalid choice: 'everything'"),
        (["--seed", "3", "--seeds", "4"], "not allowed with argument"),
    ],
)
def test_it_refuses_a_bad_chaos_command_line_in_one_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "devnet", "chaos", *args],
        env={**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "chaos").exists(), "nothing was started"


def _processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line or environment names ``text`` (a path only our children know)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z" and (text in cmdline or text in environ):
            found[int(entry.name)] = cmdline[:120]
    return found


@pytest.mark.slow
def test_it_stops_everything_it_started_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    env = {**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    command = ["devnet", "chaos", "--seeds", "1-2", "--duration", "10", "--out", str(out)]
    suite = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Interrupted once the first seed's whole control plane runs (its processes carry the seed's directory).
        seed_dir = str(out / "seed-1")
        deadline = time.monotonic() + 600  # a loaded machine sets up a seed slowly
        while len(_processes_mentioning(seed_dir)) < 12 and time.monotonic() < deadline:
            assert suite.poll() is None, suite.communicate()[0]
            time.sleep(0.2)
        assert len(_processes_mentioning(seed_dir)) >= 12
        suite.terminate()
        output, _ = suite.communicate(timeout=300)
    finally:
        if (
            suite.poll() is None
        ):  # the test failed before the signal: stop it the way under test, kill if stuck
            suite.terminate()
            try:
                suite.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                suite.kill()
    print(output)
    assert suite.returncode != 0, output
    assert "chaos: interrupted; stopped everything it started (0 of 2 seeds done)" in output, output
    assert "chaos: 0 seeds" in output, output
    assert _processes_mentioning(str(tmp_path)) == {}, output
