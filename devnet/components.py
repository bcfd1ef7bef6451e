"""The devnet's processes as named components: chain, aggregator, operator-1..N, batcher.

Each is started in its own session from the command recorded in the devnet file, so it can be stopped
(SIGTERM), killed (SIGKILL) and started again by name; everything is done by PID, never by process name.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from devnet.anvil import pid_alive, stop_pid, wait_for_rpc
from devnet.state import DevnetStateError, load_state, save_state, state_path

# What talks to the chain goes before the chain; operators before the aggregator they send to.
STOP_ORDER = ("batcher", "operator", "aggregator", "chain")


def manage_py_args(*args: str) -> list[str]:
    return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args]


def logs_dir(state_file: Path) -> Path:
    logs = state_file.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def component_running(state: dict[str, Any], name: str) -> bool:
    component = state.get("components", {}).get(name)
    return bool(component and component.get("pid") and pid_alive(int(component["pid"])))


def component_names(state: dict[str, Any]) -> list[str]:
    def order(name: str) -> tuple[int, int]:
        kind = name.split("-")[0]
        index = int(name.split("-")[1]) if "-" in name and name.split("-")[1].isdigit() else 0
        return (STOP_ORDER.index(kind) if kind in STOP_ORDER else 0, index)

    return sorted(state.get("components", {}), key=order)


def component_spawn(*, state: dict[str, Any], state_file: Path, name: str, args: list[str]) -> int:
    """Start a component from ``args`` in its own session, logging to logs/<name>.log; record it."""
    log_path = logs_dir(state_file) / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )
    previous = state.setdefault("components", {}).get(name, {})
    state["components"][name] = {
        "pid": process.pid,
        "args": args,
        "log": str(log_path),
        "started_at": time.time(),
        "starts": int(previous.get("starts", 0)) + 1,
    }
    return process.pid


def _require(state: dict[str, Any], name: str) -> dict[str, Any]:
    component = state.get("components", {}).get(name)
    if component is None:
        known = ", ".join(component_names(state)) or "none"
        raise DevnetStateError(f"no devnet component {name!r} (components: {known})")
    return dict(component)


def component_stop(*, name: str, kill: bool = False, path: Path | str | None = None) -> bool:
    """SIGTERM (or SIGKILL with ``kill``) one component by its PID. False when it was not running."""
    target = state_path(path)
    state = load_state(target)
    component = _require(state, name)
    pid = int(component.get("pid") or 0)
    running = bool(pid) and pid_alive(pid)
    if running:
        if kill:
            stop_pid(pid, sig=signal.SIGKILL, timeout=2.0)
        else:
            stop_pid(pid)
    state["components"][name]["pid"] = None
    state["components"][name]["stopped_at"] = time.time()
    save_state(state, target)
    return running


def component_start(*, name: str, path: Path | str | None = None) -> int:
    """Start a stopped component again with the command it was first started with."""
    target = state_path(path)
    state = load_state(target)
    component = _require(state, name)
    if component_running(state, name):
        raise DevnetStateError(f"{name} is already running (pid {component['pid']})")
    pid = component_spawn(state=state, state_file=target, name=name, args=list(component["args"]))
    if name == "chain":
        wait_for_rpc(str(state["rpc_url"]), pid=pid)
    save_state(state, target)
    return pid


def aggregator_replace(*, path: Path | str | None = None, kill_old: bool = False) -> tuple[int | None, int]:
    """A new aggregator process (new boot id, same key, same URL); the old one is stopped (or killed) first."""
    target = state_path(path)
    state = load_state(target)
    old = _require(state, "aggregator").get("pid")
    if old and pid_alive(int(old)):
        if kill_old:
            stop_pid(int(old), sig=signal.SIGKILL, timeout=2.0)
        else:
            stop_pid(int(old))
    pid = component_spawn(
        state=state,
        state_file=target,
        name="aggregator",
        args=list(state["components"]["aggregator"]["args"]),
    )
    state["components"]["aggregator"]["replaced_at"] = time.time()
    save_state(state, target)
    return (int(old) if old else None), pid


def components_stop_all(state: dict[str, Any]) -> list[str]:
    """Stop every running component, in STOP_ORDER; returns the names stopped."""
    stopped = []
    for name in component_names(state):
        pid = state["components"][name].get("pid")
        if pid and pid_alive(int(pid)):
            stop_pid(int(pid))
            stopped.append(name)
        state["components"][name]["pid"] = None
    return stopped
