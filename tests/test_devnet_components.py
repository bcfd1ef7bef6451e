"""Every devnet component can be stopped, killed and started again by name; nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from devnet.anvil import pid_alive, rpc
from devnet.chaos import chaos_schedule

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


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def boot_id(url: str) -> str | None:
    try:
        return str(requests.get(url + "/health", timeout=1).json()["bootId"])
    except (requests.RequestException, ValueError, KeyError):
        return None


def test_it_kills_stops_and_restarts_each_component_and_leaves_nothing_behind(tmp_path):
    env = {**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path)}
    up = manage("devnet", "up", "--operators", "3", "--direct", "--batch-interval", "1", env=env)
    assert up.returncode == 0, up.stderr
    state_file = tmp_path / "devnet.json"
    state = json.loads(state_file.read_text())
    seen_pids = {c["pid"] for c in state["components"].values()}
    try:
        aggregator_url = state["aggregator"]["url"]
        assert wait_until(lambda: boot_id(aggregator_url) is not None)
        first_boot = boot_id(aggregator_url)

        # The aggregator: SIGKILL, then start: a new process with a new boot id.
        killed = manage("devnet", "kill", "aggregator", env=env)
        assert killed.returncode == 0
        assert "killed" in killed.stdout
        assert boot_id(aggregator_url) is None
        started = manage("devnet", "start", "aggregator", env=env)
        assert started.returncode == 0, started.stderr
        assert wait_until(lambda: boot_id(aggregator_url) not in (None, first_boot))

        # replace-aggregator: another new boot id on the same URL.
        second_boot = boot_id(aggregator_url)
        assert manage("devnet", "replace-aggregator", env=env).returncode == 0
        assert wait_until(lambda: boot_id(aggregator_url) not in (None, second_boot))

        # An operator: stop, its node API stops answering; start, it answers again.
        socket = state["operators"][1]["socket"]
        assert wait_until(lambda: requests.get(socket + "/eigen/node", timeout=1).ok)
        assert manage("devnet", "stop", "operator-2", env=env).returncode == 0
        status = json.loads(manage("devnet", "status", env=env).stdout)
        assert status["components"]["operator-2"]["running"] is False
        assert manage("devnet", "start", "operator-2", env=env).returncode == 0
        assert wait_until(lambda: _answers(socket + "/eigen/node"))

        # The chain: killed and started again, it resumes the same chain (state saved every second).
        time.sleep(1.5)
        height = int(str(rpc(state["rpc_url"], "eth_blockNumber")), 16)
        assert manage("devnet", "kill", "chain", env=env).returncode == 0
        assert manage("devnet", "start", "chain", env=env).returncode == 0
        assert int(str(rpc(state["rpc_url"], "eth_blockNumber")), 16) >= height - 2

        assert manage("devnet", "kill", "batcher", env=env).returncode == 0
        assert manage("devnet", "start", "batcher", env=env).returncode == 0

        unknown = manage("devnet", "stop", "operator-9", env=env)
        assert unknown.returncode != 0
        assert "no devnet component 'operator-9'" in unknown.stderr
        seen_pids |= {c["pid"] for c in json.loads(state_file.read_text())["components"].values()}
    finally:
        down = manage("devnet", "down", env=env)
    assert down.returncode == 0, down.stderr
    seen_pids.discard(None)
    assert wait_until(lambda: not any(pid_alive(pid) for pid in seen_pids), timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def test_it_derives_the_same_chaos_schedule_from_the_same_seed():
    operators = [f"operator-{i}" for i in range(1, 6)]
    first = chaos_schedule(seed=7, duration=60, operators=operators)
    assert first == chaos_schedule(seed=7, duration=60, operators=operators)
    assert first != chaos_schedule(seed=8, duration=60, operators=operators)
    assert all(0 <= e.at <= 60 for e in first)
    # Every operator stopped or killed is started again.
    for event in first:
        if event.action in ("stop", "kill") and event.component.startswith("operator"):
            assert any(
                e.action == "start" and e.component == event.component and e.at >= event.at for e in first
            )
