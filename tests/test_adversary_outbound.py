"""Operator-chosen sockets and slow or huge answers cannot steer or stall the control plane's outbound calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import django_rq
import pytest

from controlplane.outbound import (
    DeadlineExceeded,
    OutboundError,
    OutboundRefused,
    Target,
    operator_target,
    request,
)
from liveness.probe import probe_operator
from recovery.models import RecoveryKind
from recovery.services.tasks import OPERATOR_QUEUE, recovery_task_request


class Server:
    """A real local HTTP server whose answers the test chooses: a status, a body, a pace."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.chunk_delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if server.chunk_delay:
                    for i in range(0, len(server.body), 1):
                        self.wfile.write(server.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(server.chunk_delay)
                else:
                    self.wfile.write(server.body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def target(self, *, allowed: bool = True) -> Target:
        return Target(scheme="http", host="127.0.0.1", port=self.port, allowed_network=allowed)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("socket", "why"),
    [
        ("http://10.0.0.5/x?q=", "path, query or fragment"),  # the catch-up URL used to be glued onto this
        ("http://8.8.8.8:80/#frag", "path, query or fragment"),
        ("http://user:secret@8.8.8.8:80", "user name or password"),
        ("ftp://8.8.8.8:21", "is not http(s)://host[:port]"),
        ("http://[::1", "is not a URL"),
    ],
)
def test_it_parses_an_operator_socket_strictly(socket: str, why: str) -> None:
    with pytest.raises(
        OutboundRefused, match=why.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        operator_target(socket)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "[::1]", "[::ffff:10.0.0.1]"],
)
def test_it_refuses_private_loopback_and_link_local_targets_unless_allowed(host: str, settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(OutboundRefused, match="private, loopback or link-local"):
        operator_target(f"http://{host}:9000")
    settings.OUTBOUND_ALLOWED_NETWORKS = ["0.0.0.0/0", "::/0"]
    assert operator_target(f"http://{host}:9000").allowed_network


def test_it_accepts_a_public_socket_and_a_bare_host_and_port(settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    target = operator_target("8.8.8.8:9000")
    assert (target.scheme, target.host, target.port, target.allowed_network) == (
        "http",
        "8.8.8.8",
        9000,
        False,
    )
    assert operator_target("https://1.1.1.1/").origin == "https://1.1.1.1"


def test_it_sends_a_token_only_over_https_unless_the_network_is_allowed(server: Server) -> None:
    with pytest.raises(OutboundRefused, match="over https only"):
        request(
            "POST",
            server.target(allowed=False),
            "/control/verify",
            body=b"{}",
            timeout=2,
            max_bytes=100,
            secret=True,
        )
    assert server.requests == [], "refused before connecting: the token never left"
    answer = request(
        "POST", server.target(allowed=True), "/x", body=b"{}", timeout=2, max_bytes=100, secret=True
    )
    assert answer.status == 200


def test_it_gives_up_on_a_trickling_answer_at_its_total_deadline(server: Server) -> None:
    server.body = b"x" * 200
    server.chunk_delay = 0.05  # 10 s in all, a byte at a time: each read is quick, the whole is not
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.5s"):
        request("GET", server.target(), "/slow", timeout=0.5, max_bytes=1000)
    assert time.monotonic() - started < 2.5


def test_it_refuses_an_answer_over_its_cap_without_keeping_it(server: Server) -> None:
    server.body = b"y" * (5 * 1024 * 1024)
    with pytest.raises(OutboundError, match="answer over 65536 bytes"):
        request("GET", server.target(), "/huge", timeout=5, max_bytes=64 * 1024)


def test_it_never_shows_what_a_remote_endpoint_said(server: Server) -> None:
    server.status = 500
    server.body = b"internal: db password is hunter2"
    result = probe_operator(socket=f"http://127.0.0.1:{server.port}", timeout=2)
    assert result.error == "unexpected status 500"
    assert "hunter2" not in result.error


@pytest.mark.django_db(transaction=True)
def test_it_runs_jobs_that_call_operators_on_a_queue_of_their_own() -> None:
    default, operators = django_rq.get_queue("default"), django_rq.get_queue(OPERATOR_QUEUE)
    default.connection.flushdb()
    try:
        catchup, _ = recovery_task_request(kind=RecoveryKind.CATCHUP, subject="0x" + "ab" * 32)
        forward, _ = recovery_task_request(kind=RecoveryKind.FORWARD, subject="42")
        assert [job.args for job in operators.get_jobs()] == [(catchup.id,)]
        assert [job.args for job in default.get_jobs()] == [(forward.id,)]
    finally:
        default.connection.flushdb()


def test_it_keeps_the_control_answer_small_and_our_own_words(server: Server) -> None:
    """The catch-up's control call goes through the same fence (the body is small JSON, or refused)."""
    server.body = json.dumps({"accepted": 1, "skipped": 0, "refused": []}).encode()
    answer = request(
        "POST", server.target(), "/control/verify", body=b"{}", timeout=2, max_bytes=64 * 1024, secret=True
    )
    assert json.loads(answer.body)["accepted"] == 1
    assert server.requests[0][0:2] == ("POST", "/control/verify")
