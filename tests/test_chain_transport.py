"""The JSON-RPC client's HTTP: kept-alive connections, what it kept of requests' behaviour, its failures."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chain import ChainClient, NodeUnavailable, TransientRpcError
from chain.transport import HttpTransport, TransportFailure
from devnet.anvil import free_port


@dataclass
class Seen:
    connections: int = 0
    request_lines: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    gzip: bool = False
    close_after_each: bool = False
    stall: threading.Event | None = None


def serve(seen: Seen) -> ThreadingHTTPServer:
    """A JSON-RPC node answering eth_blockNumber with 0x2a, over HTTP/1.1, counting its connections."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            seen.connections += 1
            super().setup()

        def do_POST(self) -> None:
            seen.request_lines.append(self.requestline)
            seen.authorizations.append(self.headers.get("Authorization"))
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if seen.stall is not None:
                seen.stall.wait(5)
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x2a"}).encode()
            self.send_response(200)
            if seen.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if seen.close_after_each:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def node() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    server = serve(seen)
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_it_keeps_one_connection_for_many_calls(node):
    url, seen = node
    with ChainClient(url) as client:
        assert [client.block_number() for _ in range(20)] == [42] * 20
    assert seen.connections == 1


def test_it_opens_a_new_connection_when_the_node_closed_the_last_one(node):
    url, seen = node
    seen.close_after_each = True
    with ChainClient(url, max_attempts=1) as client:
        assert [client.block_number() for _ in range(3)] == [42] * 3
    assert seen.connections == 3


def test_it_sends_the_urls_credentials_as_basic_auth_and_not_in_the_request_line(node):
    url, seen = node
    with ChainClient(url.replace("http://", "http://alice:s%40cret@") + "/rpc?key=1") as client:
        assert client.block_number() == 42
    assert seen.request_lines == ["POST /rpc?key=1 HTTP/1.1"]
    assert seen.authorizations == ["Basic " + base64.b64encode(b"alice:s@cret").decode()]


def test_it_reads_gzip_answers(node):
    url, seen = node
    seen.gzip = True
    with ChainClient(url) as client:
        assert client.block_number() == 42


def test_it_goes_through_the_proxy_the_environment_names(node, monkeypatch):
    proxy_url, seen = node
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    target = f"http://node.invalid:{free_port()}/"
    with ChainClient(target) as client:
        assert client.block_number() == 42  # answered by the "proxy", which got the absolute URL
    assert seen.request_lines == [f"POST {target} HTTP/1.1"]


def test_it_says_a_refused_connection_is_a_node_that_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransportFailure) as excinfo:
        HttpTransport(url, timeout=2).post(b"{}")
    assert excinfo.value.connect
    assert excinfo.value.reason == "connection refused"
    with pytest.raises(NodeUnavailable, match="connection refused"):
        ChainClient(url, max_attempts=1).block_number()


def test_it_times_out_an_answer_that_does_not_come(node):
    url, seen = node
    seen.stall = threading.Event()
    try:
        with (
            ChainClient(url, timeout=0.3, max_attempts=1) as client,
            pytest.raises(TransientRpcError, match=r"timeout after 0\.3s") as excinfo,
        ):
            client.block_number()
        assert not isinstance(excinfo.value, NodeUnavailable)
    finally:
        seen.stall.set()


def test_it_refuses_a_url_that_is_not_http():
    with pytest.raises(ValueError, match="not an http"):
        HttpTransport("ws://127.0.0.1:8545", timeout=1)
