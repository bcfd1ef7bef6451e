"""The devnet comes up, creates batches, serves their data, and comes down leaving no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode

from devnet.anvil import pid_alive
from devnet.batches import check_batch, parse_batch
from devnet.contracts import event_topic

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rpc(url: str, method: str, params: list) -> Any:
    body = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10
    ).json()
    assert "error" not in body, body
    return body["result"]


def test_it_comes_up_creates_and_serves_batches_and_comes_down(tmp_path):
    env = {**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path)}
    up = manage(
        "devnet",
        "up",
        "--operators",
        "3",
        "--seed",
        "t",
        "--batch-interval",
        "0.5",
        "--block-time",
        "0.5",
        "--invalid-rate",
        "1",
        env=env,
    )
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "devnet.json").read_text())
    pids = [c["pid"] for c in state["components"].values()]
    try:
        assert set(state["components"]) == {
            "chain",
            "aggregator",
            "operator-1",
            "operator-2",
            "operator-3",
            "batcher",
        }
        assert all(pid_alive(pid) for pid in pids)
        assert len(state["operators"]) == 3
        stakes = [int(op["stake"]) for op in state["operators"]]
        assert len(set(stakes)) == 3, "stakes are unequal"

        registered = rpc(
            state["rpc_url"],
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "address": state["contracts"]["registry"],
                    "topics": [event_topic("OperatorRegistered")],
                }
            ],
        )
        assert len(registered) == 3

        logs: list = []
        deadline = time.monotonic() + 60
        while len(logs) < 4 and time.monotonic() < deadline:
            time.sleep(0.5)
            logs = rpc(
                state["rpc_url"],
                "eth_getLogs",
                [
                    {
                        "fromBlock": "0x0",
                        "toBlock": "latest",
                        "address": state["contracts"]["service_manager"],
                        "topics": [event_topic("NewBatchV3")],
                    }
                ],
            )
        assert len(logs) >= 4, "the batcher creates a task every interval"

        for log in logs:
            root = bytes.fromhex(log["topics"][1][2:])
            sender, _block, pointer, _fee = decode(
                ["address", "uint32", "string", "uint256"], bytes.fromhex(log["data"][2:])
            )
            assert sender.lower() == state["accounts"]["batcher"]["address"]
            assert pointer.startswith(state["batcher"]["data_url"])
            response = requests.get(pointer, timeout=5)
            assert response.status_code == 200
            check = check_batch(batch=parse_batch(response.content), expected_root=root)
            assert check.root_matches
            assert len(check.invalid_proofs) == 1, "--invalid-rate 1 puts one bad proof in every batch"
        assert (
            requests.get(
                state["batcher"]["data_url"] + "/batches/0x" + "00" * 32 + ".json", timeout=5
            ).status_code
            == 404
        )

        again = manage("devnet", "up", env=env)
        assert again.returncode != 0
        assert "already running" in again.stderr
    finally:
        down = manage("devnet", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in pids)
    assert not (tmp_path / "devnet.json").exists()
