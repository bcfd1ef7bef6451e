"""Intake under a flood of forgeries: time to quorum of one batch, with and without 1,000 forged posts in one
operator's name (from 1,000 addresses, through a trusted proxy), on a real web server and verifier."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection

from bls import G1Point, g1_mul
from tests.benchmarks.intake import precompute
from tests.benchmarks.serve import JsonPoster, served
from tests.chain_fixtures import Net

FORGERIES = 1000


def _quorum_at(identifier: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.quorum_reached_at IS NOT NULL FROM monitoring_batchprogress p "
            "JOIN monitoring_batch b ON b.id = p.batch_id WHERE b.identifier = %s",
            [identifier],
        )
        row = cursor.fetchone()
        return bool(row and row[0])


def _reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_signature")
        cursor.execute("DELETE FROM monitoring_batchprogresschange")
        cursor.execute("DELETE FROM monitoring_batchprogress")


def _forgeries(body: dict[str, Any]) -> list[str]:
    """FORGERIES posts in ``body``'s operator's name: valid curve points, none its signature (7 distinct)."""
    point = G1Point.from_hex(body["blsSignature"])
    distinct = [json.dumps({**body, "blsSignature": g1_mul(point, n + 2).to_hex()}) for n in range(7)]
    return [distinct[i % 7] for i in range(FORGERIES)]


def time_to_quorum(*, env: dict[str, str], honest: list[dict[str, Any]], flood: list[str]) -> float:
    _reset()
    child_env = {
        **env,
        "VERIFIER_POLL_INTERVAL": "0.05",
        "LOG_LEVEL": "WARNING",
        "INTAKE_RATE": "100000000/min",
        "TRUSTED_PROXIES": "127.0.0.1",  # each forged post names its own address, as a botnet would have
    }
    with served(env=child_env, verifier=True) as base:
        poster = JsonPoster(f"{base}/api/v1/signatures")

        def post(payload: str, address: str) -> int:
            return poster.post(payload, {"X-Forwarded-For": address})

        identifier = honest[0]["batchIdentifierHash"]
        with ThreadPoolExecutor(max_workers=8) as forgers, ThreadPoolExecutor(max_workers=4) as operators:
            flooding = [forgers.submit(post, p, f"198.18.{i // 250}.{i % 250}") for i, p in enumerate(flood)]
            started = time.perf_counter()
            # Each operator posts from the address of its node (its registered socket: 127.0.0.1).
            answers = [operators.submit(post, json.dumps(b), "127.0.0.1") for b in honest]
            refused = [a.result() for a in answers if a.result() != 202]
            assert not refused, f"honest signatures refused: {refused}"
            while not _quorum_at(identifier):
                if time.perf_counter() - started > 300:
                    raise TimeoutError("no quorum within 300 s")
                time.sleep(0.01)
            reached = time.perf_counter() - started
            statuses = [f.result() for f in flooding]
        poster.close()
        assert set(statuses) <= {202, 429}, set(statuses)
        return reached


def bench_flood(*, net: Net, env: dict[str, str], repeats: int = 3) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT merkle_root, sender, identifier FROM monitoring_batch ORDER BY id LIMIT 1")
        batch = [(r, s, i) for r, s, i in cursor.fetchall()]
    honest = precompute(net, batch)
    flood = _forgeries(honest[0])
    quiet = sorted(time_to_quorum(env=env, honest=honest, flood=[]) for _ in range(repeats))[repeats // 2]
    loud = sorted(time_to_quorum(env=env, honest=honest, flood=flood) for _ in range(repeats))[repeats // 2]
    cores = os.cpu_count()
    print(
        f"flood: quorum of one batch signed by {len(honest)} operators, median of {repeats} runs, {cores} cores"
    )
    print(f"  no flood: {quiet * 1000:8.1f} ms")
    print(
        f"  {FORGERIES} forged posts in one operator's name from {FORGERIES} addresses: {loud * 1000:8.1f} ms"
    )
    print(f"  ratio: {loud / quiet:.2f} (goal <= 2.00)")
