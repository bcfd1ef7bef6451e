"""The aggregator's HTTP JSON API: POST /signatures, POST /tasks, GET /health."""

from __future__ import annotations

import logging

from devnet.aggregator.common import (
    MAX_BODY_BYTES,
    HttpError,
)
from devnet.aggregator.signatures import Signatures
from devnet.http import JsonHandler

logger = logging.getLogger("devnet.aggregator")


class Api(Signatures):
    """Routes each request to its part; any other failure answers 500 and is logged."""

    def _handler_class(self) -> type[JsonHandler]:
        node = self

        class Handler(JsonHandler):
            logger = logging.getLogger("devnet.aggregator")
            server_version = "devnet-aggregator"

            def _body(self) -> bytes:
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    raise HttpError(400, {"error": "bad Content-Length", "code": "bad_request"}) from None
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise HttpError(
                        413, {"error": f"body over {MAX_BODY_BYTES} bytes", "code": "body_too_large"}
                    )
                if length < 0:
                    raise HttpError(400, {"error": "bad Content-Length", "code": "bad_request"})
                return self.rfile.read(length)

            def do_GET(self) -> None:
                if self.route() == "/health":
                    self.send_json(200, node.health())
                else:
                    self.send_json(404, {"error": "not found", "code": "not_found"})

            def do_POST(self) -> None:
                path = self.route()
                routes = {"/signatures": node.signature_receive, "/tasks": node.task_announce}
                route = routes.get(path)
                if route is None:
                    self.send_json(404, {"error": "not found", "code": "not_found"})
                    return
                try:
                    self.send_json(200, route(self._body()))
                except HttpError as exc:
                    self.send_json(exc.status, exc.body)
                except Exception:
                    logger.exception("error handling POST %s", path)
                    self.send_json(500, {"error": "internal error", "code": "internal"})

        return Handler
