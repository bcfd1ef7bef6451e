"""The ingest process killed mid-range and restarted: every batch exactly once, cursor consistent."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from controlplane.changes import ledger_applied
from ledger.models import Batch, ChainEvent, IngestCursor
from tests.chain_fixtures import net_deploy

ROOT = Path(__file__).resolve().parent.parent
TASKS = 60


def start_ingest(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "ingest", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.django_db(transaction=True)
def test_it_resumes_after_sigkill_with_every_batch_exactly_once(anvil):
    net = net_deploy(anvil)
    roots = {"0x" + net.create_task(seed=i).hex() for i in range(TASKS)}
    # Tiny ranges (one task per block, 3 blocks per chunk) so the kill lands mid-range.
    env = net.env(INGEST_INITIAL_RANGE="3", INGEST_MAX_RANGE="3")

    process = start_ingest(env)
    deadline = time.monotonic() + 60
    while Batch.objects.count() < TASKS // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    partial = Batch.objects.count()
    assert 0 < partial < TASKS, "the kill landed mid-range"

    # Whatever committed is consistent: the cursor covers exactly the events stored.
    cursor = IngestCursor.objects.get(address=net.service_manager)
    assert not ChainEvent.objects.filter(
        address=net.service_manager, block_number__gt=cursor.block_number
    ).exists()

    finished = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "ingest", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr

    assert Batch.objects.count() == TASKS
    assert set(Batch.objects.values_list("merkle_root", flat=True)) == roots
    assert ChainEvent.objects.filter(name="NewBatchV3").count() == TASKS
    cursor.refresh_from_db()
    head = net.w3.eth.block_number
    assert cursor.block_number == head
    assert cursor.block_hash == "0x" + bytes(net.w3.eth.get_block(head)["hash"]).hex()


@pytest.mark.django_db(transaction=True)
def test_it_lets_only_one_ingester_run_and_a_standby_take_over(anvil):
    net = net_deploy(anvil)
    net.create_task(seed=1)
    env = net.env()
    first = start_ingest(env)
    try:
        deadline = time.monotonic() + 30
        while not Batch.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Batch.objects.exists()
        second = start_ingest({**env, "LOG_LEVEL": "INFO"})
        lines: list[str] = []
        stream = second.stdout
        assert stream is not None

        def read() -> None:
            for line in stream:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # Only once the second replica is standing by (its start-up is slow on a loaded machine) is the
            # first killed: otherwise the second would simply find the lock free.
            deadline = time.monotonic() + 60
            while not any("standing by" in line for line in lines) and time.monotonic() < deadline:
                assert second.poll() is None, "".join(lines)
                time.sleep(0.05)
            assert any("standing by" in line for line in lines), "".join(lines)
            net.create_task(seed=2)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            # The standby takes the lock within its poll interval and ingests the new task.
            deadline = time.monotonic() + 20
            while Batch.objects.count() < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert Batch.objects.count() == 2
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=20)
            reader.join(timeout=10)
        assert any("ingest: stopped" in line for line in lines), "".join(lines)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


@pytest.mark.django_db
def test_it_commits_a_chunk_without_waiting_for_the_disk_flush(anvil):
    # Safe because the chunk's rows and its cursor move are one transaction: a crash loses both or neither.
    net = net_deploy(anvil)
    net.create_task(seed=1)
    seen: list[str] = []

    def record(**_: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])

    ledger_applied.connect(record, dispatch_uid="test-sync-commit")
    try:
        net.ingester().sync_once()
    finally:
        ledger_applied.disconnect(dispatch_uid="test-sync-commit")
    assert seen
    assert set(seen) == {"off"}
    assert Batch.objects.count() == 1
