"""The web server (uvicorn's workers) and, when asked, the verifier, as the benchmarks run them: one copy for all."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests
from django.db import connection

from controlplane.processes import stop_pid
from controlplane.serve import web_command
from devnet.anvil import free_port
from intake.services import NOTIFY_CHANNEL

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


def verifier_wait(*, since: datetime, timeout: float = 60.0) -> None:
    """Until a verifier started at ``since`` listens for the intake's notifications: the load starts against a
    running verifier, as in production, not while its process is still importing Django on the cores the load is
    measured on. (A verifier of an earlier run, stopped a moment ago, may still be listed: it connected earlier.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s"
                " AND backend_start >= %s",
                [f"LISTEN {NOTIFY_CHANNEL}", since],
            )
            row = cursor.fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no verifier listened on {NOTIFY_CHANNEL} within {timeout:g} s")


class JsonPoster:
    """POSTs JSON bodies to one URL, each thread over a kept-alive connection of its own, as an operator does.

    http.client, not requests: the load generator shares the machine's cores with the server it measures, and
    requests spends several times the CPU per post (about 1 ms, a third of a core at 300 posts/s).
    """

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def post(self, payload: str, headers: dict[str, str] | None = None) -> int:
        """The answer's status. A kept-alive connection the server closed in between is opened again, once."""
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(
                    "POST",
                    self.path,
                    body=payload,
                    headers={"Content-Type": "application/json", **(headers or {})},
                )
                answer = connection.getresponse()
                answer.read()
                if answer.will_close:
                    connection.close()
                    self._local.connection = None
                return answer.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()


@contextmanager
def served(*, env: dict[str, str], verifier: bool = False, workers: int | None = None) -> Iterator[str]:
    """The web server on a free port with ``env`` and ``workers`` worker processes (unset: WEB_WORKERS), and the
    verifier loop if asked; yields the base URL once it answers, and stops both by PID after. BENCH_WEB_LOG=path
    keeps the web server's log."""
    base = f"http://127.0.0.1:{free_port()}"
    started = datetime.now(UTC)
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
        if verifier:
            verifier_wait(since=started)
        yield base
    finally:
        for process in processes:
            stop_pid(process.pid, timeout=10)
            process.wait()
