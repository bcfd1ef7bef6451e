"""Intake throughput: signatures accepted + stored (HTTP JSON) + verified, end to end, per pairing backend.

The real web server serving the endpoint, real Postgres, a real verifier process; the load is precomputed
signatures of devnet operators over many ingested batches. Baselines measured in the same run: one py-ecc verify
per signature; and the first backend served by one web worker, next to WEB_WORKERS workers.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from bls import keypair_from_secret, verify
from tests.benchmarks.serve import JsonPoster, served
from tests.chain_fixtures import Net


def precompute(net: Net, batches: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Every operator's signed response for every batch (root, sender, identifier)."""
    keypairs = [keypair_from_secret(int(op["bls_secret"], 16)) for op in net.state["operators"]]
    bodies = []
    for root, sender, identifier in batches:
        message = bytes.fromhex(identifier[2:])
        for keypair in keypairs:
            bodies.append(
                {
                    "batchMerkleRoot": root,
                    "senderAddress": sender,
                    "batchIdentifierHash": identifier,
                    "blsSignature": keypair.sign(message).to_hex(),
                    "operatorId": "0x" + keypair.operator_id.hex(),
                }
            )
    return bodies


def naive_rate(net: Net, bodies: list[dict[str, Any]], samples: int = 4) -> float:
    """Signatures/s verifying one py-ecc pairing check per signature."""
    from bls import G1Point

    keys = {
        "0x" + keypair_from_secret(int(op["bls_secret"], 16)).operator_id.hex(): keypair_from_secret(
            int(op["bls_secret"], 16)
        ).public_key_g2
        for op in net.state["operators"]
    }
    started = time.perf_counter()
    for body in bodies[:samples]:
        ok = verify(
            public_key_g2=keys[body["operatorId"]],
            message=bytes.fromhex(body["batchIdentifierHash"][2:]),
            signature=G1Point.from_hex(body["blsSignature"]),
        )
        assert ok
    return samples / (time.perf_counter() - started)


def _count(status: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_signature WHERE status = %s", [status])
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def run_intake(
    *,
    env: dict[str, str],
    bodies: list[dict[str, Any]],
    backend: str,
    workers: int,
    verify: bool = True,
    clients: int = 16,
) -> dict[str, float]:
    """Post every body through HTTP (``workers`` web worker processes) while a verifier runs; time until all are
    verified. Without ``verify``, no verifier runs and the time ends with the last answer."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_signature")
        cursor.execute("DELETE FROM monitoring_batchprogresschange")
        cursor.execute("DELETE FROM monitoring_batchprogress")
    child_env = {
        **env,
        "BLS_PAIRING_BACKEND": backend,
        "LOG_LEVEL": "WARNING",
        "INTAKE_RATE": "100000000/min",  # every load client posts from 127.0.0.1
    }
    with served(env=child_env, verifier=verify, workers=workers) as base:
        url = f"{base}/api/v1/signatures"
        payloads = [json.dumps(b) for b in bodies]
        poster = JsonPoster(url)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            statuses = list(pool.map(poster.post, payloads))
        accepted_at = time.perf_counter()
        poster.close()
        assert statuses.count(202) == len(bodies), f"not all accepted: {set(statuses)}"
        while verify and _count("verified") < len(bodies):
            if time.perf_counter() - started > 900:
                raise TimeoutError("verification did not finish within 900 s")
            time.sleep(0.05)
        done = time.perf_counter()
        assert _count("invalid") == 0
        assert verify or _count("pending") == len(bodies)
    return {
        "accepted_per_s": len(bodies) / (accepted_at - started),
        "end_to_end_per_s": len(bodies) / (done - started),
        "seconds": done - started,
    }


def bench_intake(*, net: Net, env: dict[str, str], backends: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT merkle_root, sender, identifier FROM monitoring_batch ORDER BY id")
        batches = [(r, s, i) for r, s, i in cursor.fetchall()]
    print(
        f"bench intake: signing {len(batches)} batches x {len(net.state['operators'])} operators ...",
        flush=True,
    )
    bodies = precompute(net, batches)
    naive = naive_rate(net, bodies)
    print(f"intake: {len(bodies)} signatures over {len(batches)} batches, {os.cpu_count()} cores")
    print(f"  naive baseline (one py-ecc verify per signature): {naive:8.1f} signatures/s")
    workers = int(settings.WEB_WORKERS)
    # The web workers alone: HTTP JSON accepted and stored with no verifier competing for the cores.
    stored = {
        n: run_intake(env=env, bodies=bodies, backend=backends[0], workers=n, verify=False)["accepted_per_s"]
        for n in sorted({1, workers})
    }
    print(
        f"  HTTP JSON accepted+stored, no verifier running: 1 web worker {stored[1]:7.0f}/s; {workers} web "
        f"workers {stored[workers]:7.0f}/s = {stored[workers] / stored[1]:.2f}x"
    )

    def report(backend: str, result: dict[str, float], served_by: int) -> None:
        label = f"{served_by} web worker{'s' if served_by > 1 else ''}:"
        print(
            f"  {backend:>8}, {label:<15} accepted+stored {result['accepted_per_s']:7.0f}/s; "
            f"accepted+stored+verified {result['end_to_end_per_s']:7.0f}/s "
            f"({result['seconds']:.1f} s) = {result['end_to_end_per_s'] / naive:.0f}x naive"
        )

    for index, backend in enumerate(backends):
        if index == 0:  # the web workers' baseline, on the first backend: the same load served by one worker
            single = run_intake(env=env, bodies=bodies, backend=backend, workers=1)
            report(backend, single, 1)
        result = run_intake(env=env, bodies=bodies, backend=backend, workers=workers)
        report(backend, result, workers)
        if index == 0:
            print(
                f"  web workers ({backend}, HTTP JSON): {workers} vs 1: accepted+stored "
                f"{result['accepted_per_s'] / single['accepted_per_s']:.2f}x, end to end "
                f"{result['end_to_end_per_s'] / single['end_to_end_per_s']:.2f}x"
            )
