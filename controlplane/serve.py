"""The web process: uvicorn serving ``controlplane.asgi:application`` (HTTP, and Channels' websockets) from
several worker processes.

Run as ``python -m controlplane.serve --host H --port P [--workers N]`` (N defaults to WEB_WORKERS, one per core).
Everything that launches the web server builds its command with ``web_command``. The parent binds the port and
supervises the workers (each started by multiprocessing's spawn, each with its own Django and database pool): a
worker that dies is started again, and SIGTERM to the parent stops them all. Each worker also asks the kernel for
SIGKILL when its parent dies, so a parent killed outright leaves no worker holding the port.

Proxy headers are off (the project believes X-Forwarded-For only from TRUSTED_PROXIES, in its own code), there is
no lifespan (the application has no start-up work) and no Server header.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

# The parent's PID, as its workers inherit it: a worker whose parent is no longer this process exits at once.
PARENT_PID_ENV = "CONTROLPLANE_WEB_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# On SIGTERM a worker stops accepting, then gives requests and sockets in flight this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 5
# The dashboard's sockets receive only {"type": "resync"} from browsers: a small cap on incoming messages.
WS_MAX_MESSAGE_BYTES = 64 * 1024


def web_command(host: str, port: int, workers: int | None = None) -> list[str]:
    """The argv that starts the web server on ``host:port`` with this interpreter (``workers`` unset: WEB_WORKERS)."""
    argv = [sys.executable, "-m", "controlplane.serve", "--host", host, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return argv


def worker_application() -> Any:
    """uvicorn's application factory, called once in each worker as it starts: the worker is tied to its parent's
    life first, then gets the ASGI application (which sets up Django)."""
    try:
        _die_with_parent()
        from controlplane.asgi import application
    except Exception:
        # Exit as uvicorn does for an application that does not load: the parent then stops instead of
        # starting workers that would fail the same way, one after the other.
        from uvicorn.config import STARTUP_FAILURE

        logging.getLogger("uvicorn.error").exception("the ASGI application did not load")
        sys.exit(STARTUP_FAILURE)
    return application


def _die_with_parent() -> None:
    parent = os.environ.get(PARENT_PID_ENV)
    if parent is None or int(parent) == os.getpid():
        return  # one process serving by itself (a single worker): nothing to tie
    if sys.platform != "linux":
        return  # pragma: no cover - the image and the devnet run on Linux
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != int(parent):
        os._exit(1)  # the parent died before the request above: its death signal was never coming


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m controlplane.serve",
        description="The web process: uvicorn workers serving controlplane.asgi:application.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: WEB_WORKERS)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.conf import settings

    from controlplane.env import ImproperlyConfiguredEnv

    try:
        # The settings, read here first: a malformed one stops the parent in one line, before any worker starts.
        workers = args.workers if args.workers is not None else int(settings.WEB_WORKERS)
        log_level = str(settings.LOG_LEVEL).lower()
    except ImproperlyConfiguredEnv as exc:
        sys.exit(f"controlplane.serve: {exc}")

    import uvicorn
    from uvicorn.config import LOG_LEVELS, STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    os.environ[PARENT_PID_ENV] = str(os.getpid())
    config = uvicorn.Config(
        "controlplane.serve:worker_application",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level=log_level if log_level in LOG_LEVELS else "info",
    )
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        failed = not server.started
    else:
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        # uvicorn stops the parent when a worker fails before serving (it would fail again): say so by the status.
        failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    if failed:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
