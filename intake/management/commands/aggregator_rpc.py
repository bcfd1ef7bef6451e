"""``python manage.py aggregator_rpc --listen 127.0.0.1:8090``: the intake as Go net/rpc, in front of the
aggregator's address (see intake.rpc). Runs until SIGTERM or SIGINT."""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlplane.loops import stop_on_signals
from intake.rpc import rpc_server_start


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise CommandError(f"--listen must be HOST:PORT (like 127.0.0.1:8090), got {value!r}")
    return host.strip("[]"), int(port)


class Command(BaseCommand):
    help = "Serve the signature intake over Go net/rpc (gob), as Aligned's operators call their aggregator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _listen_address(options["listen"])
        try:
            server, thread = rpc_server_start(host=host, port=port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        stopping = threading.Event()
        stop_on_signals(stopping)
        self.stdout.write(f"aggregator_rpc: net/rpc intake listening on {server.address}", ending="\n")
        self.stdout.flush()
        try:
            stopping.wait()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
            self.stdout.write("aggregator_rpc: stopped")
