"""The web server (uvicorn's workers) and, when asked, the verifier, as the benchmarks run them: one copy for all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from controlplane.processes import stop_pid
from controlplane.serve import web_command
from devnet.anvil import free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def http_wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


@contextmanager
def served(*, env: dict[str, str], verifier: bool = False, workers: int | None = None) -> Iterator[str]:
    """The web server on a free port with ``env`` and ``workers`` worker processes (unset: WEB_WORKERS), and the
    verifier loop if asked; yields the base URL once it answers, and stops both by PID after. BENCH_WEB_LOG=path
    keeps the web server's log."""
    base = f"http://127.0.0.1:{free_port()}"
    log = open(os.environ.get("BENCH_WEB_LOG", os.devnull), "ab")  # noqa: SIM115
    port = int(base.rsplit(":", 1)[1])
    processes = [
        subprocess.Popen(
            web_command("127.0.0.1", port, workers=workers),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    ]
    log.close()
    try:
        if verifier:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "manage.py"), "verifier"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        http_wait(base + "/healthz")
        yield base
    finally:
        for process in processes:
            stop_pid(process.pid, timeout=10)
            process.wait()
