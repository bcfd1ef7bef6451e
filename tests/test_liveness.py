"""Operator liveness against a real HTTP node API on 127.0.0.1 and the real Postgres."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from pytest_django import DjangoAssertNumQueries, Settings

from controlplane.locks import advisory_lock
from intake.models import BatchRefusal, Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from liveness.jobs import PROBE_LOCK, probe_operators_job
from liveness.models import OperatorLiveness, OperatorState, OperatorStateChange
from liveness.probe import probe_operator
from liveness.selectors import (
    operator_downtime_windows,
    operator_missed_batches,
    operators_live_ids,
)
from liveness.services import (
    SIGN_OF_LIFE_REASON,
    operator_liveness_record,
    operator_sign_of_life,
    operators_probe,
    operators_sign_of_life,
)
from tests.factories import batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db

TIMEOUT = 0.3
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class NodeApi:
    """A stand-in for an operator's EigenLayer node API; ``health`` is 200, 206, 503, 404, "hang" or "trickle"."""

    def __init__(self) -> None:
        self.health: int | str = 200
        self.version = "v0.9.3"
        self.release = threading.Event()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def socket(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/eigen/node/health":
                    mode = api.health
                    if mode == "hang":
                        api.release.wait(10)
                        return
                    if mode == "trickle":
                        for byte in b"HTTP/1.0 200 OK\r\n":
                            if api.release.wait(0.05):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        return
                    assert isinstance(mode, int)
                    self.send_response(mode)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/eigen/node":
                    body = json.dumps(
                        {
                            "node_name": "aligned-operator",
                            "spec_version": "v0.0.1",
                            "node_version": api.version,
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Stop answering: the port refuses connections from now on."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def node_api() -> Iterator[NodeApi]:
    api = NodeApi()
    api.start()
    try:
        yield api
    finally:
        api.release.set()
        api.stop()


@pytest.fixture
def second_node_api() -> Iterator[NodeApi]:
    api = NodeApi()
    api.start()
    try:
        yield api
    finally:
        api.release.set()
        api.stop()


def liveness(operator_id: str) -> OperatorLiveness:
    return OperatorLiveness.objects.get(operator_id=operator_id)


def changes(operator_id: str) -> list[tuple[str, datetime, datetime | None]]:
    return list(
        OperatorStateChange.objects.filter(operator_id=operator_id)
        .order_by("since", "id")
        .values_list("state", "since", "until")
    )


# --- The probe ---------------------------------------------------------------------------------


def test_it_reads_health_and_version_from_the_node_api(node_api: NodeApi) -> None:
    result = probe_operator(socket=node_api.socket, timeout=TIMEOUT)
    assert (result.state, result.node_version, result.error) == (OperatorState.UP, "v0.9.3", "")
    assert 0 < result.latency < TIMEOUT

    node_api.health = 206
    result = probe_operator(socket=node_api.socket + "/", timeout=TIMEOUT)
    assert (result.state, result.node_version, result.error) == (
        OperatorState.DEGRADED,
        "v0.9.3",
        "partially healthy (206)",
    )

    node_api.health = 503
    result = probe_operator(socket=node_api.socket, timeout=TIMEOUT)
    assert (result.state, result.node_version, result.error) == (OperatorState.DOWN, "", "unhealthy (503)")

    node_api.health = 404
    assert probe_operator(socket=node_api.socket, timeout=TIMEOUT).error == "unexpected status 404"

    # A registered socket without a scheme is host:port over plain HTTP.
    node_api.health = 200
    assert probe_operator(socket=f"127.0.0.1:{node_api.port}", timeout=TIMEOUT).state == OperatorState.UP


def test_it_reports_a_refused_connection_and_a_bad_socket(node_api: NodeApi) -> None:
    node_api.stop()
    result = probe_operator(socket=node_api.socket, timeout=TIMEOUT)
    assert (result.state, result.error) == (OperatorState.DOWN, "connection refused")

    result = probe_operator(socket="ftp://127.0.0.1:21", timeout=TIMEOUT)
    assert result.state == OperatorState.DOWN
    assert result.error == "socket 'ftp://127.0.0.1:21' is not http(s)://host[:port]"


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_it_gives_up_on_a_node_that_does_not_answer_in_time(node_api: NodeApi, mode: str) -> None:
    node_api.health = mode
    started = time.monotonic()
    result = probe_operator(socket=node_api.socket, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert (result.state, result.error) == (OperatorState.DOWN, "no answer within 0.3s")
    # Under the 0.85 s the trickle takes in all (each byte comes well within TIMEOUT), with room for a busy machine.
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.4


# --- Probe rounds --------------------------------------------------------------------------------


def test_it_flips_down_when_the_node_stops_answering_and_up_when_it_answers_again(node_api: NodeApi) -> None:
    operator = operator_create(label="a", socket=node_api.socket)
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.previous_state, outcome.state, outcome.changed) == ("unknown", "up", True)
    row = liveness(operator.operator_id)
    assert (row.state, row.node_version, row.consecutive_failures) == ("up", "v0.9.3", 0)
    assert row.last_seen_at == row.last_probe_at

    [outcome] = operators_probe(timeout=TIMEOUT)
    assert not outcome.changed

    node_api.stop()
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.previous_state, outcome.state) == ("up", "down")
    row = liveness(operator.operator_id)
    assert (row.state, row.last_error, row.consecutive_failures) == (
        "down",
        "node API: connection refused",
        1,
    )
    assert row.node_version == "v0.9.3"  # the last version it told us

    node_api.start()  # same port
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.previous_state, outcome.state) == ("down", "up")

    history = changes(operator.operator_id)
    assert [state for state, _, _ in history] == ["up", "down", "up"]
    assert history[0][2] == history[1][1]
    assert history[1][2] == history[2][1]
    assert history[2][2] is None
    assert OperatorStateChange.objects.get(operator_id=operator.operator_id, state="down").reason == (
        "node API: connection refused"
    )


def test_it_marks_a_partially_healthy_node_degraded_and_probes_only_registered_sockets(
    node_api: NodeApi,
) -> None:
    node_api.health = 206
    operator = operator_create(label="a", socket=node_api.socket)
    operator_create(label="gone", socket=node_api.socket, registered=False)
    operator_create(label="socketless", socket="")
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.operator_id, outcome.state) == (operator.operator_id, "degraded")
    assert liveness(operator.operator_id).last_error == "node API: partially healthy (206)"
    assert operators_live_ids() == {operator.operator_id}


def test_it_does_not_let_a_hanging_operator_delay_a_healthy_one(
    node_api: NodeApi, second_node_api: NodeApi
) -> None:
    node_api.health = "hang"
    hanging = operator_create(label="hanging", socket=node_api.socket)
    healthy = operator_create(label="healthy", socket=second_node_api.socket)

    started = time.monotonic()
    outcomes = {outcome.operator_id: outcome for outcome in operators_probe(timeout=TIMEOUT)}
    elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT + 0.3, f"the round took {elapsed:.2f}s"
    assert outcomes[healthy.operator_id].state == "up"
    assert outcomes[healthy.operator_id].probe.latency < 0.1
    assert outcomes[hanging.operator_id].state == "down"
    assert outcomes[hanging.operator_id].probe.error == "no answer within 0.3s"


def test_it_tolerates_a_blip_when_down_after_is_two(node_api: NodeApi, settings: Settings) -> None:
    settings.LIVENESS_DOWN_AFTER = 2
    operator = operator_create(label="a", socket=node_api.socket)
    operators_probe(timeout=TIMEOUT)
    node_api.health = 503
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.state, outcome.changed, liveness(operator.operator_id).consecutive_failures) == (
        "up",
        False,
        1,
    )
    node_api.health = 200
    operators_probe(timeout=TIMEOUT)
    assert liveness(operator.operator_id).consecutive_failures == 0  # the count is of consecutive failures

    node_api.health = 503
    operators_probe(timeout=TIMEOUT)
    [outcome] = operators_probe(timeout=TIMEOUT)
    assert (outcome.previous_state, outcome.state) == ("up", "down")
    assert liveness(operator.operator_id).last_error == "node API: unhealthy (503)"


# --- Recording, windows, signs of life -----------------------------------------------------------


def test_it_records_state_changes_as_windows() -> None:
    op = hex32("operator-windows")
    minute = timedelta(minutes=1)
    assert operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="healthy", at=T0)
    assert not operator_liveness_record(
        operator_id=op, state=OperatorState.UP, reason="healthy", at=T0 + minute
    )
    assert operator_liveness_record(
        operator_id=op, state=OperatorState.DOWN, reason="refused", at=T0 + 2 * minute
    )
    assert not operator_liveness_record(
        operator_id=op, state=OperatorState.DOWN, reason="refused", at=T0 + 3 * minute
    )
    assert operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="ok", at=T0 + 5 * minute)
    assert operator_liveness_record(
        operator_id=op, state=OperatorState.DOWN, reason="503", at=T0 + 9 * minute
    )

    assert changes(op) == [
        ("up", T0, T0 + 2 * minute),
        ("down", T0 + 2 * minute, T0 + 5 * minute),
        ("up", T0 + 5 * minute, T0 + 9 * minute),
        ("down", T0 + 9 * minute, None),
    ]
    row = liveness(op)
    assert (row.state, row.since, row.consecutive_failures) == ("down", T0 + 9 * minute, 1)
    assert operator_downtime_windows(operator_id=op) == [
        (T0 + 2 * minute, T0 + 5 * minute),
        (T0 + 9 * minute, None),
    ]
    assert operator_downtime_windows(operator_id=op.upper(), since=T0 + 6 * minute) == [
        (T0 + 9 * minute, None)
    ]


def test_it_flips_a_down_operator_up_on_a_sign_of_life() -> None:
    op = hex32("operator-signer")
    operator_liveness_record(operator_id=op, state=OperatorState.DOWN, reason="refused", at=T0)
    operator_sign_of_life(operator_id=op, at=T0 + timedelta(seconds=30))
    row = liveness(op)
    assert (row.state, row.since, row.last_seen_at) == ("up", T0 + timedelta(seconds=30), row.since)
    assert changes(op)[-1] == ("up", T0 + timedelta(seconds=30), None)
    assert OperatorStateChange.objects.get(operator_id=op, state="up").reason == SIGN_OF_LIFE_REASON

    # An operator never seen before is up from its first accepted signature.
    fresh = hex32("operator-fresh")
    operator_sign_of_life(operator_id=fresh, at=T0)
    assert [state for state, _, _ in changes(fresh)] == ["up"]


def test_it_is_one_update_when_the_operator_is_already_up(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    op = hex32("operator-busy")
    operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="healthy", at=T0)
    later = T0 + timedelta(minutes=1)
    with django_assert_num_queries(1):
        operator_sign_of_life(operator_id=op, at=later)
    with django_assert_num_queries(1):
        operator_sign_of_life(operator_id=op, at=T0)  # late and out of order: never moves last_seen_at back
    assert liveness(op).last_seen_at == later
    assert len(changes(op)) == 1


def test_it_records_a_passes_signs_of_life_in_one_update_for_those_already_up(
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    busy = [hex32(f"operator-busy-{n}") for n in range(5)]
    for op in busy:
        operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="healthy", at=T0)
    later = T0 + timedelta(minutes=1)
    with django_assert_max_num_queries(1):
        operators_sign_of_life(operator_ids=[op.upper() for op in busy], at=later)
    assert {liveness(op).last_seen_at for op in busy} == {later}
    # Among them one that is down and one never seen: each flips up, the rest stay one UPDATE.
    down, fresh = hex32("operator-down"), hex32("operator-new")
    operator_liveness_record(operator_id=down, state=OperatorState.DOWN, reason="refused", at=T0)
    operators_sign_of_life(operator_ids=[*busy, down, fresh], at=later + timedelta(seconds=1))
    assert (liveness(down).state, liveness(fresh).state) == ("up", "up")
    assert changes(down)[-1] == ("up", later + timedelta(seconds=1), None)
    assert {len(changes(op)) for op in busy} == {1}


def test_it_ignores_a_failed_probe_older_than_a_sign_of_life() -> None:
    op = hex32("operator-raced")
    operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="healthy", at=T0)
    # The probe went out at T0+10s and failed; a signature was accepted at T0+11s, before it was recorded.
    operator_sign_of_life(operator_id=op, at=T0 + timedelta(seconds=11))
    assert not operator_liveness_record(
        operator_id=op, state=OperatorState.DOWN, reason="timeout", at=T0 + timedelta(seconds=10)
    )
    row = liveness(op)
    assert (row.state, row.consecutive_failures, row.last_error) == ("up", 0, "timeout")


@pytest.mark.django_db(transaction=True)
def test_it_cannot_flip_twice_under_concurrent_recorders() -> None:
    op = hex32("operator-contended")
    operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="healthy", at=T0)
    barrier = threading.Barrier(6)
    flipped: list[bool] = []

    def record() -> None:
        try:
            barrier.wait()
            flipped.append(
                operator_liveness_record(
                    operator_id=op, state=OperatorState.DOWN, reason="refused", at=T0 + timedelta(seconds=1)
                )
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=record) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(flipped) == [False] * 5 + [True]
    assert [state for state, _, _ in changes(op)] == ["up", "down"]
    assert liveness(op).consecutive_failures == 6


# --- Selectors ----------------------------------------------------------------------------------------


def _seen_at(batch: Batch, at: datetime) -> None:
    Batch.objects.filter(pk=batch.pk).update(first_seen_at=at)


def _sign(batch: Batch, operator_id: str, status: str) -> None:
    Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator_id,
        signature_x=hex32(f"x-{batch.identifier}-{operator_id}-{status}"),
        signature_y=hex32(f"y-{batch.identifier}-{operator_id}-{status}"),
        status=status,
    )


def test_it_lists_the_batches_first_seen_while_down_and_not_signed() -> None:
    op = operator_create(label="missing").operator_id
    other = operator_create(label="other").operator_id
    minute = timedelta(minutes=1)
    operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="ok", at=T0)
    operator_liveness_record(operator_id=op, state=OperatorState.DOWN, reason="refused", at=T0 + 10 * minute)
    operator_liveness_record(operator_id=op, state=OperatorState.UP, reason="ok", at=T0 + 20 * minute)
    operator_liveness_record(operator_id=op, state=OperatorState.DEGRADED, reason="206", at=T0 + 25 * minute)
    operator_liveness_record(operator_id=op, state=OperatorState.DOWN, reason="503", at=T0 + 30 * minute)

    def batch(label: str, at: datetime, **fields: object) -> Batch:
        created = batch_create(label=label, **fields)  # type: ignore[arg-type]
        _seen_at(created, at)
        return created

    batch("before", T0 + 5 * minute)
    missed = batch("missed", T0 + 11 * minute)
    signed = batch("signed", T0 + 12 * minute)
    _sign(signed, op, SignatureStatus.PENDING)
    rejected = batch("rejected", T0 + 13 * minute)
    _sign(rejected, op, SignatureStatus.INVALID)  # an invalid signature is no signature
    _sign(rejected, other, SignatureStatus.VERIFIED)  # nor is somebody else's
    verified = batch("verified", T0 + 14 * minute, verified_block=120)
    batch("orphaned", T0 + 15 * minute, status=BatchStatus.ORPHANED)
    batch("at-recovery", T0 + 20 * minute)  # the window ends where the next state begins
    batch("degraded", T0 + 26 * minute)
    still_down = batch("still-down", T0 + 31 * minute)
    # It said, when asked to catch up, that it refuses this one on purpose (a bad proof): answered, not missed.
    refused = batch("refused", T0 + 32 * minute)
    BatchRefusal.objects.create(operator_id=op, batch_identifier=refused.identifier, reason="1 proof invalid")

    assert list(operator_missed_batches(operator_id=op)) == [missed, rejected, verified, still_down]
    assert list(operator_missed_batches(operator_id=other)) == []


def test_it_counts_up_and_degraded_registered_operators_as_live() -> None:
    up = operator_create(label="up").operator_id
    degraded = operator_create(label="degraded").operator_id
    down = operator_create(label="down").operator_id
    operator_create(label="unknown")
    gone = operator_create(label="gone", registered=False).operator_id
    for op, state in [(up, "up"), (degraded, "degraded"), (down, "down"), (gone, "up")]:
        operator_liveness_record(operator_id=op, state=OperatorState(state), reason="", at=T0)
    assert operators_live_ids() == {up, degraded}


# --- Command and job ---------------------------------------------------------------------------------


def test_it_probes_once_from_the_command_and_prints_changes(node_api: NodeApi, settings: Settings) -> None:
    settings.LIVENESS_PROBE_TIMEOUT = TIMEOUT
    operator = operator_create(label="cmd", socket=node_api.socket)
    out = StringIO()
    call_command("probe_operators", "--once", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines == [
        f"probe_operators: {operator.operator_id} unknown -> up (node API: healthy (200))",
        "probe_operators: probed 1 operators, 1 live, 1 changes",
    ]

    node_api.health = 503
    out = StringIO()
    call_command("probe_operators", "--once", stdout=out)
    assert f"{operator.operator_id} up -> down (node API: unhealthy (503))" in out.getvalue()
    assert probe_operators_job() == 0


def test_it_leaves_probing_to_the_replica_that_holds_the_lock(node_api: NodeApi) -> None:
    operator_create(label="locked", socket=node_api.socket)
    with advisory_lock(PROBE_LOCK):
        assert probe_operators_job() is None
        with pytest.raises(CommandError, match="held by another process"):
            call_command("probe_operators", "--once", stdout=StringIO())
    assert not OperatorLiveness.objects.exists()
    assert probe_operators_job() == 1
