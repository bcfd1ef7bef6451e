"""The node API: EigenLayer's ``/eigen/node`` endpoints, Prometheus ``/metrics`` and ``POST /control/verify``."""

from __future__ import annotations

import logging

from devnet.http import JsonHandler
from devnet.operator.common import (
    _SERVICE_HEALTH,
    CONTROL_MAX_BODY,
    CONTROL_PATH,
    HEALTHY,
    NODE_VERSION,
    PARTIAL,
    SERVICES,
    SPEC_VERSION,
    UNHEALTHY,
)
from devnet.operator.control import Control, ControlRequestError, parse_control_request
from devnet.operator.health import Health


class NodeApi(Health, Control):
    """What the node answers over HTTP; the control plane probes and drives catch-up through it."""

    def _handler_class(self) -> type[JsonHandler]:
        node = self

        class Handler(JsonHandler):
            logger = logging.getLogger("devnet.operator")
            log_prefix = f"{node.name} http"
            server_version = f"devnet-operator/{NODE_VERSION}"

            def do_GET(self) -> None:
                path = self.route()
                if path == "/eigen/node":
                    self.send_json(
                        200,
                        {"node_name": node.name, "spec_version": SPEC_VERSION, "node_version": NODE_VERSION},
                    )
                elif path == "/eigen/node/health":
                    code, reasons = node.node_health()
                    self.send_json(code, {"status": _health_word(code), "reasons": reasons})
                elif path == "/eigen/node/services":
                    services = node.services_health()
                    self.send_json(
                        200,
                        {
                            "services": [
                                {
                                    "id": sid,
                                    "name": name,
                                    "description": description,
                                    "status": services[sid].status,
                                }
                                for sid, (name, description) in SERVICES.items()
                            ]
                        },
                    )
                elif match := _SERVICE_HEALTH.match(path):
                    service = node.services_health().get(match.group(1))
                    if service is None:
                        self.send_json(
                            404, {"error": f"no service {match.group(1)!r}", "services": list(SERVICES)}
                        )
                    else:
                        reasons = [service.reason] if service.reason else []
                        self.send_json(
                            service.code, {"status": _health_word(service.code), "reasons": reasons}
                        )
                elif path == "/metrics":
                    self.send_body(
                        200, node.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8"
                    )
                elif path == CONTROL_PATH:
                    self.send_json(405, {"error": "use POST"}, {"Allow": "POST"})
                else:
                    self.send_json(404, {"error": "not found"})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                path = self.route()
                if path != CONTROL_PATH:
                    if path.startswith("/eigen/") or path == "/metrics":
                        self.send_json(405, {"error": "use GET"}, {"Allow": "GET"})
                    else:
                        self.send_json(404, {"error": "not found"})
                    return
                length_header = self.headers.get("Content-Length")
                length = int(length_header) if length_header and length_header.isdigit() else None
                if not node.control_authorized(self.headers.get("Authorization")):
                    # Drain a small body so closing the socket does not reset the connection under the answer.
                    if length is not None and length <= CONTROL_MAX_BODY:
                        self.rfile.read(length)
                    self.send_json(
                        401,
                        {"error": "missing or wrong bearer token"},
                        {"WWW-Authenticate": 'Bearer realm="operator-control"'},
                    )
                    return
                if length is None:
                    self.send_json(411, {"error": "Content-Length required"})
                    return
                if length > CONTROL_MAX_BODY:
                    self.send_json(413, {"error": f"body is larger than {CONTROL_MAX_BODY} bytes"})
                    return
                body = self.rfile.read(length)
                try:
                    tasks = parse_control_request(body)
                except ControlRequestError as exc:
                    self.send_json(exc.status, exc.as_json())
                    return
                accepted, skipped, refused = node.control_verify(tasks)
                self.send_json(202, {"accepted": accepted, "skipped": skipped, "refused": refused})

        return Handler


def _health_word(code: int) -> str:
    return {HEALTHY: "healthy", PARTIAL: "partially healthy", UNHEALTHY: "unhealthy"}.get(code, str(code))
