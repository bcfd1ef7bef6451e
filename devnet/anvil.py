"""Start and stop a real anvil node (from npm ``@foundry-rs/anvil``), always by its PID."""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings

from controlplane.processes import pid_alive, stop_pid

__all__ = ["Anvil", "AnvilError", "free_port", "pid_alive", "start_anvil", "stop_pid"]


class AnvilError(RuntimeError):
    pass


def anvil_binary() -> Path:
    """The anvil binary that npm installed for this platform."""
    base = Path(settings.NODE_MODULES_DIR) / "@foundry-rs"
    candidates = sorted(base.glob("anvil-*/bin/anvil"))
    if not candidates:
        raise AnvilError(
            f"anvil not found under {base}: run `make setup` (or `npm install`) in the project directory"
        )
    return candidates[0]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: collections.deque[int] = collections.deque(maxlen=1024)


def free_port() -> int:
    """A port free now, for a server that binds it a little later.

    Chosen below the kernel's ephemeral range: a port the kernel picked with bind(0) is an ephemeral one, and an
    outgoing connection (to Postgres, to another server) can take it before the server binds it.
    """
    low, _ = _ephemeral_range()
    candidates = [p for p in range(20000, min(low, 32768)) if p not in _handed_out]
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            # Not handed out again soon: two servers given the same still-unbound port (a devnet's operator and
            # its aggregator's net/rpc server, say) would collide when the second binds.
            _handed_out.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc(url: str, method: str, params: list[object] | None = None, *, timeout: float = 10.0) -> object:
    """One JSON-RPC call; raises AnvilError on a JSON-RPC error."""
    response = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout
    )
    response.raise_for_status()
    body = response.json()
    if "error" in body:
        raise AnvilError(f"{method}: {body['error']}")
    return body["result"]


@dataclass
class Anvil:
    """A running anvil process."""

    pid: int
    port: int
    process: subprocess.Popen[bytes] | None = None
    args: list[str] | None = None  # the command line, so the devnet can start it again

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list[object] | None = None) -> object:
        return rpc(self.url, method, params)

    def stop(self, timeout: float = 5.0) -> None:
        stop_pid(self.pid, timeout=timeout)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)


def wait_for_rpc(url: str, *, pid: int, timeout: float = 15.0) -> None:
    """Until the node at ``url`` answers JSON-RPC; AnvilError if process ``pid`` dies first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise AnvilError(f"anvil (pid {pid}) exited before answering on {url}")
        try:
            rpc(url, "eth_chainId", timeout=1.0)
            return
        except (requests.RequestException, AnvilError):
            time.sleep(0.05)
    raise AnvilError(f"anvil did not answer on {url} within {timeout:g} s")


def start_anvil(
    *,
    port: int | None = None,
    block_time: float | None = None,
    chain_id: int = 31337,
    log_path: Path | None = None,
    extra_args: list[str] | None = None,
    detach: bool = False,
) -> Anvil:
    """Start anvil on 127.0.0.1 and wait until it answers JSON-RPC.

    ``detach`` puts it in its own session so it outlives the caller (the devnet's ``up``).
    """
    port = port or free_port()
    args = [
        str(anvil_binary()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--silent",
    ]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    args += extra_args or []
    stdout = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        args, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
    )
    anvil = Anvil(pid=process.pid, port=port, process=process, args=args)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AnvilError(f"anvil exited with {process.returncode} (port {port} taken?)")
        try:
            anvil.rpc("eth_chainId")
            return anvil
        except (requests.RequestException, AnvilError):
            time.sleep(0.05)
    anvil.stop()
    raise AnvilError(f"anvil did not answer on port {port} within 15 s")
