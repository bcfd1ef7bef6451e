"""The baseline scenarios reproduce the seed: with --direct, faults lose batches; no-fault loses none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from devnet.anvil import free_port

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^batches: (\d+) created, (\d+) verified, (\d+) lost$", re.MULTILINE)


def scenario(
    name: str, tmp_path: Path, *extra: str, env_extra: dict[str, str] | None = None
) -> tuple[int, int, int, str]:
    env = {**os.environ, "SECRET_KEY": "test", "DEVNET_DIR": str(tmp_path), **(env_extra or {})}
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "devnet", "scenario", name, *extra],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = SUMMARY.search(done.stdout)
    assert match, done.stdout
    created, verified, lost = (int(g) for g in match.groups())
    return created, verified, lost, done.stdout


SCENARIO_REDIS_URL = "redis://127.0.0.1:6379/12"
NEIGHBOUR_REDIS_URL = "redis://127.0.0.1:6379/11"


def through_control_plane(name: str, tmp_path: Path, database_url: str) -> tuple[int, int, int, str]:
    """Five batches of scenario ``name`` with the control plane between the operators and the aggregator."""
    return scenario(
        name,
        tmp_path,
        "--batches",
        "5",
        "--control-plane-url",
        f"http://127.0.0.1:{free_port()}",
        env_extra={"DATABASE_URL": database_url, "REDIS_URL": SCENARIO_REDIS_URL},
    )


@pytest.mark.slow
def test_it_verifies_every_batch_without_faults(tmp_path):
    created, verified, lost, output = scenario("no-fault", tmp_path, "--direct", "--batches", "4")
    assert (created, verified, lost) == (4, 4, 0), output


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["operators-down", "aggregator-crash", "aggregator-replace", "aggregator-gone"]
)
def test_it_reproduces_lost_batches_when_operators_send_directly(tmp_path, name):
    created, verified, lost, output = scenario(name, tmp_path, "--direct", "--batches", "5")
    assert created == 5
    assert lost >= 1, output
    assert verified + lost == created
    assert output.count(": lost") == lost


@pytest.fixture
def scenario_database():
    """A database of its own for the control plane a scenario starts (it resets its ledger)."""
    name = "controlplane_scenario_test"
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["operators-down", "aggregator-crash", "aggregator-replace", "redis-flush", "worker-kill", "ingest-down"],
)
def test_it_loses_nothing_when_the_control_plane_is_in_the_loop(tmp_path, name, scenario_database):
    # Another tenant of the same Redis server: no fault of a scenario (Redis flushed, say) may touch it.
    neighbour = redis.Redis.from_url(NEIGHBOUR_REDIS_URL)
    sentinel = f"scenario-neighbour:{name}"
    neighbour.set(sentinel, "kept", ex=600)
    created, verified, lost, output = through_control_plane(name, tmp_path, scenario_database)
    assert (created, verified, lost) == (5, 5, 0), output
    assert neighbour.get(sentinel) == b"kept", "the scenario wiped another database on the Redis server"
    neighbour.delete(sentinel)
    # Each batch verified exactly once: one "verified in block" per batch line.
    assert output.count("verified in block") == 5


@pytest.mark.slow
def test_it_answers_on_chain_itself_when_the_aggregator_is_gone_for_good(tmp_path, scenario_database):
    created, verified, lost, output = through_control_plane("aggregator-gone", tmp_path, scenario_database)
    assert (created, verified, lost) == (5, 5, 0), output
    assert output.count("verified in block") == 5
    answered = re.search(r"(\d+) answered by the standby", output)
    assert answered is not None, output
    assert int(answered.group(1)) >= 1, output
