"""Intake over the operators' own wire protocol (Go net/rpc, gob) against JSON over HTTP, in the same run.

The same precomputed signed responses are accepted and stored (no verifier running) once through the web server's
``POST /api/v1/signatures`` and once through ``aggregator_rpc``, each by the same number of client threads,
each thread keeping one connection (as an operator does). Printed: signatures/s each way and their ratio.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from controlplane.netrpc import Client
from controlplane.processes import stop_pid
from devnet.anvil import free_port
from intake.parse import signed_response_parse
from intake.wire import METHOD, SIGNED_TASK_RESPONSE, signed_response_to_gob
from tests.benchmarks.serve import ROOT, JsonPoster, served


def _clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_signature")
        cursor.execute("DELETE FROM monitoring_batchprogresschange")
        cursor.execute("DELETE FROM monitoring_batchprogress")


def _stored() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_signature")
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def _in_threads(clients: int, work: list[Any], send: Any) -> float:
    """Seconds to send every item of ``work`` from ``clients`` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(send, work))
    elapsed = time.perf_counter() - started
    assert all(results), "not every signature was accepted"
    return elapsed


def run_json(*, env: dict[str, str], bodies: list[dict[str, Any]], clients: int) -> float:
    _clear()
    with served(env=env) as base:
        poster = JsonPoster(f"{base}/api/v1/signatures")
        elapsed = _in_threads(clients, [json.dumps(b) for b in bodies], lambda body: poster.post(body) == 202)
        poster.close()
    assert _stored() == len(bodies)
    return len(bodies) / elapsed


def run_gob(*, env: dict[str, str], bodies: list[dict[str, Any]], clients: int) -> float:
    _clear()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "aggregator_rpc", "--listen", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("aggregator_rpc did not listen within 30 s") from None
                time.sleep(0.1)
        arguments = [signed_response_to_gob(signed_response_parse(json.dumps(b).encode())) for b in bodies]
        connections: dict[int, Client] = {}

        def call(argument: dict[str, Any]) -> bool:
            ident = threading.get_ident()
            if ident not in connections:
                connections[ident] = Client("127.0.0.1", port, timeout=30)
            return bool(connections[ident].call(METHOD, SIGNED_TASK_RESPONSE, argument) == 0)

        elapsed = _in_threads(clients, arguments, call)
        for client in connections.values():
            client.close()
    finally:
        stop_pid(process.pid)
    assert _stored() == len(bodies)
    return len(bodies) / elapsed


def bench_wire(*, env: dict[str, str], bodies: list[dict[str, Any]], clients: int = 16) -> None:
    child_env = {**env, "LOG_LEVEL": "WARNING", "INTAKE_RATE": "100000000/min"}
    json_rate = run_json(env=child_env, bodies=bodies, clients=clients)
    gob_rate = run_gob(env=child_env, bodies=bodies, clients=clients)
    print(f"wire: {len(bodies)} signatures accepted and stored by {clients} clients, one connection each")
    print(f"  JSON over HTTP ({settings.WEB_WORKERS} web workers): {json_rate:7.0f} signatures/s")
    print(f"  Go net/rpc (aggregator_rpc):   {gob_rate:7.0f} signatures/s = {gob_rate / json_rate:.2f}x JSON")
