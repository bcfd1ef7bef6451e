"""The intake over Go net/rpc (``aggregator_rpc``) with an unmodified Go operator, and our net/rpc client with an
unmodified Go aggregator: the wire protocol Aligned's nodes speak, byte-compatible both ways."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as HttpClient

from controlplane.auth import TokenScope, api_token_create
from controlplane.gob import Encoder
from controlplane.netrpc import REQUEST, Client, ProtocolError
from intake.models import Signature, SignatureStatus
from intake.parse import signed_response_parse
from intake.rpc import RpcServer, rpc_server_start
from intake.verify import signatures_verify_batch
from intake.wire import EMPTY, METHOD, PING, SIGNED_TASK_RESPONSE, signed_response_to_gob
from tests.chain_fixtures import Net, net_with_task, signed_response
from tests.golang import GoAggregator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ingested(anvil: Any) -> tuple[Net, bytes]:
    return net_with_task(anvil, seed=21)


@pytest.fixture
def server() -> Iterator[RpcServer]:
    rpc, thread = rpc_server_start(host="127.0.0.1", port=0)
    try:
        yield rpc
    finally:
        rpc.shutdown()
        rpc.server_close()
        thread.join(5)


def go_operator(
    go_programs: dict[str, Path], server: RpcServer, *requests: dict[str, Any]
) -> list[dict[str, Any]]:
    """What an unmodified Go operator's net/rpc calls answer, one per request."""
    done = subprocess.run(
        [str(go_programs["operator"]), server.address],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_it_stores_a_go_operators_signature_before_replying_zero(
    go_programs: dict[str, Path], server: RpcServer, ingested: tuple[Net, bytes]
) -> None:
    net, root = ingested
    body = signed_response(net, root=root, operator=0)
    # The second call is an operator's retry: a duplicate, answered 0 as well.
    answers = go_operator(go_programs, server, {"response": body}, {"response": body})
    assert answers == [{"reply": 0, "error": ""}, {"reply": 0, "error": ""}]
    row = Signature.objects.get()
    assert (row.batch_identifier, row.operator_id) == (body["batchIdentifierHash"], body["operatorId"])
    assert row.signature_x == body["blsSignature"]["X"].lower()
    assert row.signature_y == body["blsSignature"]["Y"].lower()
    assert row.source == "127.0.0.1"

    signatures_verify_batch(batch_identifier=body["batchIdentifierHash"])
    assert Signature.objects.get().status == SignatureStatus.VERIFIED
    _, key = api_token_create(
        user=User.objects.create_user(username="reader"),
        name="reader",
        scope=TokenScope.READ,
        created_by="tests",
    )
    api = HttpClient(headers={"authorization": f"Token {key}"})
    operator = api.get(f"/api/v1/operators/{body['operatorId']}/").json()
    assert operator["signatures"]["verified"] == 1


def test_it_answers_an_error_string_whenever_nothing_was_stored(
    go_programs: dict[str, Path], server: RpcServer, ingested: tuple[Net, bytes]
) -> None:
    net, root = ingested
    good = signed_response(net, root=root, operator=1)
    stranger = {**good, "operatorId": "0x" + "77" * 32}
    wrong_identifier = {**good, "batchIdentifierHash": "0x" + "00" * 32}
    answers = go_operator(
        go_programs,
        server,
        {"response": stranger},
        {"response": wrong_identifier},
        {"response": good, "nilSignature": True},
    )
    assert [a["error"] for a in answers] == [
        "refused (operatorId): operatorId is not a registered operator",
        "refused (batchIdentifierHash): batchIdentifierHash is not keccak256(batchMerkleRoot ‖ senderAddress)",
        "refused (BlsSignature): invalid response: nil signature",
    ]
    assert not Signature.objects.exists()


def test_it_answers_server_running_with_one(go_programs: dict[str, Path], server: RpcServer) -> None:
    assert go_operator(go_programs, server, {"ping": True}) == [{"reply": 1, "error": ""}]


def _connect(server: RpcServer) -> socket.socket:
    host, port = server.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _closed(conn: socket.socket) -> bool:
    """True once the server has closed the connection (after what it had to say)."""
    conn.settimeout(10)
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return True


def test_it_survives_garbage_and_truncated_streams_and_stores_nothing(
    go_programs: dict[str, Path],
    server: RpcServer,
    ingested: tuple[Net, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    net, root = ingested
    body = signed_response(net, root=root, operator=2)

    with _connect(server) as plain_http:  # not net/rpc at all
        plain_http.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert plain_http.recv(100).startswith(b"HTTP/1.0 405")
        assert _closed(plain_http)

    with _connect(server) as garbage:
        garbage.sendall(b"CONNECT /_goRPC_ HTTP/1.0\n\n")
        assert garbage.recv(100) == b"HTTP/1.0 200 Connected to Go RPC\n\n"
        garbage.sendall(b"\x05\xff\x81\x04\x00\x00" + bytes(range(200)))
        assert _closed(garbage)

    encoder = Encoder()
    call = encoder.message(REQUEST, {"ServiceMethod": METHOD, "Seq": 0}) + encoder.message(
        SIGNED_TASK_RESPONSE, signed_response_to_gob(signed_response_parse(json.dumps(body).encode()))
    )
    with _connect(server) as truncated:  # a whole call but its last bytes, then gone
        truncated.sendall(b"CONNECT /_goRPC_ HTTP/1.0\n\n")
        truncated.recv(100)
        truncated.sendall(call[:-7])
    deadline = time.monotonic() + 10
    while "in the argument of" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"stream ended in the middle of a message, in the argument of {METHOD}" in caplog.text
    assert not Signature.objects.exists()

    # The server is still there for a real operator, and the whole call stores the signature.
    assert go_operator(go_programs, server, {"response": body}) == [{"reply": 0, "error": ""}]
    assert Signature.objects.count() == 1


def test_it_refuses_a_listen_address_it_cannot_use() -> None:
    with pytest.raises(CommandError, match="HOST:PORT"):
        call_command("aggregator_rpc", "--listen", "8090")


@pytest.fixture
def go_aggregator(go_programs: dict[str, Path], request: pytest.FixtureRequest) -> Iterator[GoAggregator]:
    """An unmodified Go aggregator answering every signature with ``param`` (0 by default)."""
    node = GoAggregator(go_programs["aggregator"], reply=getattr(request, "param", 0))
    try:
        yield node
    finally:
        node.stop()


def test_it_calls_an_unmodified_go_aggregator_byte_compatibly(
    go_aggregator: GoAggregator, ingested: tuple[Net, bytes]
) -> None:
    address = go_aggregator.address
    net, root = ingested
    body = signed_response(net, root=root, operator=3)
    host, port = address.rsplit(":", 1)
    with Client(host, int(port)) as client:
        assert client.call(PING, EMPTY, {}) == 1
        response = signed_response_parse(json.dumps(body).encode())
        assert client.call(METHOD, SIGNED_TASK_RESPONSE, signed_response_to_gob(response)) == 0
        assert client.call(METHOD, SIGNED_TASK_RESPONSE, signed_response_to_gob(response)) == 0
    assert go_aggregator.received() == {
        **body,
        "blsSignature": {
            k: "0x" + int(v, 16).to_bytes(32, "big").hex() for k, v in body["blsSignature"].items()
        },
    }


@pytest.mark.parametrize("go_aggregator", [1], indirect=True)
def test_it_hears_an_aggregators_reply_of_one_as_not_delivered(
    go_aggregator: GoAggregator, ingested: tuple[Net, bytes]
) -> None:
    address = go_aggregator.address
    net, root = ingested
    response = signed_response_parse(json.dumps(signed_response(net, root=root, operator=0)).encode())
    host, port = address.rsplit(":", 1)
    with Client(host, int(port)) as client:
        assert client.call(METHOD, SIGNED_TASK_RESPONSE, signed_response_to_gob(response)) == 1


def test_it_says_when_the_peer_is_not_a_net_rpc_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer_http() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")

        import threading

        thread = threading.Thread(target=answer_http)
        thread.start()
        with pytest.raises(ProtocolError, match="unexpected HTTP response"):
            Client("127.0.0.1", port)
        thread.join(5)
