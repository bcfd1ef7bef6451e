"""The one HTTP server helper of the devnet's servers (batch data, the operator's node API, the aggregator).

Answers carry their length and ``Cache-Control: no-store``, HEAD answers as GET without the body, request logs go
to the server's logger at debug level, and every server runs on a daemon thread that ``shutdown()`` ends.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler with JSON answers; subclasses define ``do_GET`` / ``do_POST`` and their ``logger``."""

    logger = logging.getLogger("devnet")
    log_prefix = "http"

    def route(self) -> str:
        """The request's path without query or trailing slash ("/" for the root)."""
        return urlsplit(self.path).path.rstrip("/") or "/"

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(document).encode(), "application/json", headers)

    def log_message(self, format: str, *args: Any) -> None:
        self.logger.debug(f"{self.log_prefix}: " + format, *args)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer (or a handler bug) goes to the log, not to stderr.
        logging.getLogger("devnet").warning("http: request from %s failed", client_address[0], exc_info=True)


def serve(
    handler: type[BaseHTTPRequestHandler], *, host: str, port: int, name: str
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Listen on (host, port) (0: any free port) and serve on a daemon thread until ``shutdown()``."""
    server = _Server((host, port), handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.1), name=name, daemon=True)
    thread.start()
    return server, thread
