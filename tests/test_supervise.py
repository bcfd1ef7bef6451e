"""The supervisor behind `make run` and the chaos suite: a child that dies is started again, with backoff."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from controlplane.processes import pids_with_env
from controlplane.supervise import Supervisor


def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def poll_until(supervisor: Supervisor, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        supervisor.poll()
        time.sleep(0.01)


def test_it_starts_a_crashing_child_again_with_doubling_backoff_and_says_so() -> None:
    said: list[str] = []
    supervisor = Supervisor(
        spawn=spawn, say=said.append, backoff_first=0.2, backoff_cap=0.8, healthy_after=60
    )
    child = supervisor.start("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    poll_until(supervisor, lambda: child.starts == 5)
    delays = [line.split("again in ")[1] for line in said if "exited" in line]
    assert delays[:4] == ["0.2 s", "0.4 s", "0.8 s", "0.8 s"]
    assert "crasher (pid" in said[0]
    assert "exited with status 3" in said[0]
    assert said[1].startswith("crasher started again (pid ")
    assert said[1].endswith(", start #2)")
    supervisor.stop_all()


def test_it_leaves_a_child_stopped_on_purpose_alone_until_resumed() -> None:
    said: list[str] = []
    supervisor = Supervisor(spawn=spawn, say=said.append, backoff_first=0.05)
    child = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    first = child.pid
    supervisor.stop("sleeper", kill=True)
    for _ in range(20):
        supervisor.poll()
        time.sleep(0.02)
    assert not child.running
    assert said == []
    supervisor.resume("sleeper")
    assert child.running
    assert child.pid != first
    # Killed without hold (a crash the chaos suite makes): it comes back by itself, not counted as unexpected.
    second = child.pid
    supervisor.stop("sleeper", kill=True, hold=False)
    poll_until(supervisor, lambda: child.running and child.pid != second)
    assert child.unexpected_exits == 0
    assert said == [f"sleeper started again (pid {child.pid}, start #3)"]
    supervisor.stop_all()
    assert not child.running


def test_it_finds_every_process_started_with_a_marked_environment(tmp_path: Path) -> None:
    marker = str(tmp_path / "seed-1")
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "DEVNET_DIR": marker},
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "DEVNET_DIR": str(tmp_path / "elsewhere")},
    )
    try:
        assert set(pids_with_env("DEVNET_DIR", marker)) == {child.pid}
        assert set(pids_with_env("DEVNET_DIR", str(tmp_path))) == {child.pid, other.pid}
    finally:
        for process in (child, other):
            process.kill()
            process.wait()
    assert pids_with_env("DEVNET_DIR", str(tmp_path)) == {}
