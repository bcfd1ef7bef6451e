"""``manage.py runstack`` brings the whole stack up, serves batches, and stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings
from psycopg import sql

from devnet.anvil import free_port, pid_alive, stop_pid

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "controlplane_runstack_test"
CHAIN_SETTINGS = (
    "CHAIN_RPC_URL",
    "SERVICE_MANAGER_ADDRESS",
    "REGISTRY_ADDRESSES",
    "START_BLOCK",
    "DEVNET_FILE",
)


def _admin_connection() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname="postgres",
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        autocommit=True,
    )


def _drop(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


@pytest.fixture
def database_url() -> Iterator[str]:
    """A database of its own for the stack (its processes connect outside the test transaction)."""
    with _admin_connection() as conn:
        _drop(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{user}@"
    yield f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{DATABASE}"
    with _admin_connection() as conn:
        _drop(conn)


def _env(devnet_dir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHAIN_SETTINGS}
    # The test reads the API without logging in.
    env.update(
        {
            "DEVNET_DIR": str(devnet_dir),
            "DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
            "PUBLIC_DASHBOARD": "1",
        }
    )
    env.setdefault("SECRET_KEY", "test-only-secret-key")
    return env


def _wait_for(
    what: str, check: Callable[[], Any], *, timeout: float, process: subprocess.Popen[bytes], log: Path
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"runstack exited with {process.returncode} while waiting for {what}:\n{log.read_text()}"
            )
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, requests.RequestException):
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


class Stack:
    def __init__(self, tmp_path: Path, database_url: str, port: int) -> None:
        self.dir = tmp_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp_path / "runstack.out"
        self.output = open(self.log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "runstack",
                "--port",
                str(port),
                "--rpc-port",
                str(free_port()),
                "--operators",
                "2",
            ],
            cwd=ROOT,
            env=_env(tmp_path, database_url),
            stdout=self.output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.pids: dict[str, int] = {}

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        return _wait_for(what, check, timeout=timeout, process=self.process, log=self.log)

    def start(self) -> None:
        """Wait until the page answers and a batch made it from the devnet through the ingester to the API."""
        self.wait("the home page", lambda: requests.get(self.url + "/", timeout=2).status_code == 200)
        self.wait(
            "a batch in the API",
            lambda: requests.get(self.url + "/api/v1/batches/", timeout=5).json()["count"],
        )
        started = json.loads((self.dir / "runstack.json").read_text())
        devnet = json.loads((self.dir / "devnet.json").read_text())
        assert started["pid"] == self.process.pid
        assert started["started_devnet"] is True
        assert set(started["children"]) == {
            "ingest",
            "verifier",
            "prober",
            "recovery",
            "alerts",
            "worker",
            "worker-ops",
            "aggregator-rpc",
            "web",
        }
        self.pids = {**started["children"], **{n: c["pid"] for n, c in devnet["components"].items()}}
        assert {"chain", "batcher", "aggregator", "operator-1", "ingest", "web"} <= set(self.pids)
        assert all(pid_alive(pid) for pid in self.pids.values()), self.pids

    def close(self) -> None:
        """Whatever the outcome, leave nothing running (by PID)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.pids.values():
            if pid_alive(pid):
                stop_pid(pid)
        self.output.close()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    running = Stack(tmp_path, database_url, free_port())
    try:
        yield running
    finally:
        running.close()


@pytest.mark.slow
def test_it_serves_ingested_batches_and_stops_everything_it_started_on_sigint(stack: Stack) -> None:
    started = time.monotonic()
    stack.start()
    assert f"Control plane: {stack.url}" in stack.log.read_text()
    home = requests.get(stack.url + "/", timeout=5).text
    assert "Latest batches" in home
    operators = requests.get(stack.url + "/api/v1/operators/", timeout=5).json()
    assert operators["count"] == 2
    ready = time.monotonic() - started

    stack.process.send_signal(signal.SIGINT)
    code = stack.process.wait(timeout=60)

    output = stack.log.read_text()
    assert code == 0, output
    gone = {name: not pid_alive(pid) for name, pid in stack.pids.items()}
    assert all(gone.values()), (gone, output)
    assert not (stack.dir / "runstack.json").exists()
    assert not (stack.dir / "devnet.json").exists()
    assert "runstack: stopped" in output
    print(
        f"runstack ready with a batch in {ready:.1f} s; stopped in {time.monotonic() - started - ready:.1f} s"
    )


@pytest.mark.slow
def test_it_starts_a_child_that_dies_again_says_so_and_keeps_the_rest_running(stack: Stack) -> None:
    stack.start()
    killed = stack.pids["ingest"]

    os.kill(killed, signal.SIGKILL)

    def restarted() -> int | None:
        children = json.loads((stack.dir / "runstack.json").read_text())["children"]
        return children["ingest"] if children["ingest"] != killed else None

    new_pid = stack.wait("ingest to be started again", restarted, timeout=30)
    output = stack.log.read_text()
    assert f"runstack: ingest (pid {killed}) exited with status -9" in output
    assert f"runstack: ingest started again (pid {new_pid}, start #2)" in output
    assert pid_alive(new_pid)
    others = {name: pid for name, pid in stack.pids.items() if name != "ingest"}
    assert all(pid_alive(pid) for pid in others.values()), "nothing else was stopped"
    stack.pids["ingest-2"] = new_pid
    # It works again: new batches keep reaching the API through the restarted ingester.
    seen = requests.get(stack.url + "/api/v1/batches/", timeout=5).json()["count"]
    stack.wait(
        "a new batch", lambda: requests.get(stack.url + "/api/v1/batches/", timeout=5).json()["count"] > seen
    )

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0
    assert not pid_alive(new_pid)


def test_it_refuses_a_port_that_is_taken_in_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "runstack", "--port", str(port), "--no-devnet"],
            cwd=ROOT,
            env=_env(tmp_path, os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused")),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"CommandError: port {port} on 127.0.0.1 is already in use: stop what uses it or pass --port N"
    ]
    assert not (tmp_path / "devnet.json").exists()
