"""Every long-running command rides out Postgres and Redis restarts, says so once per outage, never spins, and
stops on SIGTERM even while standing by. Against a Postgres cluster and a Redis server of the test's own, on
ports of their own, so they can be crashed and restarted without touching anything else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError

from controlplane import loops
from controlplane.loops import Loop, loop_run
from controlplane.models import LoopHeartbeat
from devnet.infra import PostgresServer, RedisServer
from tests.chain_fixtures import Net, net_deploy

COMMANDS = ("ingest", "verifier", "probe_operators", "recovery", "alerts")
MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]


class OwnInfra:
    def __init__(self, root: Path) -> None:
        self.pg = PostgresServer(root / "pg").init()
        self.redis = RedisServer(root / "redis")

    def start(self) -> None:
        self.pg.start()
        self.redis.start()
        self.database = self.pg.create_database("loops")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "SECRET_KEY": "test",
            "DATABASE_URL": self.database,
            "REDIS_URL": self.redis.url,
            "DEVNET_FILE": "/nonexistent/devnet.json",
            "AGGREGATOR_URL": "http://127.0.0.1:9",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database, connect_timeout=5) as conn:
            return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnInfra]:
    own = OwnInfra(tmp_path_factory.mktemp("own-infra"))
    own.start()
    migrate = subprocess.run(
        [*MANAGE, "migrate", "--no-input", "-v", "0"],
        env=own.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    try:
        yield own
    finally:
        own.redis.stop()
        own.pg.destroy()


def heartbeats(infra: OwnInfra) -> dict[str, float]:
    """Per loop, the newest pass as a Unix time."""
    rows = infra.query(
        "SELECT name, extract(epoch FROM max(last_pass_at)) FROM controlplane_loopheartbeat GROUP BY name"
    )
    return {str(name): float(at) for name, at in rows}


def wait_for(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except psycopg.Error:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_it_rides_out_postgres_and_redis_restarts_in_every_long_running_command(
    infra: OwnInfra, anvil: Any
) -> None:
    net: Net = net_deploy(anvil)
    env = infra.env(
        **{k: v for k, v in net.env().items() if k.startswith(("CHAIN_", "SERVICE_", "REGISTRY_", "START_"))},
        INGEST_CONFIRMATIONS="0",
        INGEST_POLL_INTERVAL="0.2",
        VERIFIER_POLL_INTERVAL="0.2",
        LIVENESS_PROBE_INTERVAL="0.2",
        RECOVERY_INTERVAL="0.2",
        ALERTS_INTERVAL="0.2",
    )
    processes = {
        name: subprocess.Popen(
            [*MANAGE, name], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name in COMMANDS
    }
    try:
        wait_for(lambda: set(heartbeats(infra)) == set(COMMANDS), timeout=60, what="every loop's first pass")

        infra.pg.restart(mode="immediate")  # a crash: every connection dies mid-whatever
        infra.pg.restart(mode="fast")
        infra.redis.restart()  # without persistence: everything in it is gone too
        # Postgres away for a while: every loop backs off instead of spinning.
        cpu_before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        infra.pg.stop(mode="fast")
        time.sleep(4.0)
        cpu_used = {name: cpu_seconds(p.pid) - cpu_before[name] for name, p in processes.items()}
        infra.pg.start()
        healed = time.time()

        wait_for(
            lambda: all(at > healed for at in heartbeats(infra).values()) and len(heartbeats(infra)) == 5,
            timeout=60,
            what="every loop to pass again after the outages",
        )
        # And the work is real: a batch created now is ingested.
        net.create_task(seed=7)
        wait_for(
            lambda: infra.query("SELECT count(*) FROM monitoring_batch")[0][0] == 1, timeout=30, what="ingest"
        )
        assert {name: p.poll() for name, p in processes.items()} == dict.fromkeys(COMMANDS), "none exited"
        for name, used in cpu_used.items():
            assert used < 2.0, f"{name} used {used:.1f} s of CPU in 4 s without Postgres: it spins"
    finally:
        outputs = {}
        for name, process in processes.items():
            process.send_signal(signal.SIGTERM)
            outputs[name] = process.communicate(timeout=30)[0]
    outages_said = 0
    for name, process in processes.items():
        output = outputs[name]
        assert process.returncode == 0, f"{name} exited {process.returncode}:\n{output}"
        assert "Traceback" not in output, f"{name}:\n{output}"
        # At most once per outage (a loop whose pool reconnected within its timeout may not notice one at all).
        said = output.count("postgres unavailable")
        assert said <= 3, f"{name} said the outage {said} times (three outages):\n{output}"
        assert output.count("postgres is back") == said, output
        outages_said += said
    assert outages_said >= 1, outputs
    assert output.count("alerts: evaluating every 0.2s") >= 2, "took its lock again after losing it"


def test_it_stops_a_replica_on_sigterm_while_it_stands_by_for_the_lock(infra: OwnInfra) -> None:
    env = infra.env(ALERTS_INTERVAL="0.2")
    active = subprocess.Popen(
        [*MANAGE, "alerts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    standby: subprocess.Popen[str] | None = None
    try:
        assert active.stdout is not None
        assert active.stdout.readline().strip() == "alerts: evaluating every 0.2s"
        standby = subprocess.Popen(
            [*MANAGE, "alerts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert standby.stdout is not None
        assert "standing by: lock 'alerts' is held by another replica" in standby.stdout.readline()
        asked = time.monotonic()
        standby.send_signal(signal.SIGTERM)
        rest, _ = standby.communicate(timeout=10)
        assert standby.returncode == 0, rest
        assert time.monotonic() - asked < 5
        assert rest.strip().splitlines()[-1] == "alerts: stopped"
        assert "evaluating" not in rest, "it never became active"
    finally:
        for process in (active, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_it_goes_on_when_recording_its_heartbeat_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Postgres restart that lands between a step and its heartbeat once killed the recovery loop."""
    stopping = threading.Event()
    passes: list[int] = []
    original = loops._Runner._beat
    failures = iter([True])

    def beat_once_failing(runner: loops._Runner) -> None:
        if next(failures, False):
            raise OperationalError("consuming input failed: server closed the connection unexpectedly")
        original(runner)

    def step() -> None:
        passes.append(1)
        if len(passes) == 3:
            stopping.set()

    monkeypatch.setattr(loops._Runner, "_beat", beat_once_failing)
    loop_run(Loop(name="beating", step=step, interval=0.0), stopping=stopping)
    assert len(passes) == 3
    assert LoopHeartbeat.objects.filter(name="beating").exists()
