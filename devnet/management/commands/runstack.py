"""``python manage.py runstack`` — everything ``make run`` needs, in one foreground process.

Migrates, starts the devnet (or reuses a running one), then runs the ingester and the web server as child
processes, each in its own session, with their output prefixed by name on this terminal (and kept in
``$DEVNET_DIR/logs/<name>.log``). A child that dies is started again with backoff, and runstack says so; the
rest of the stack goes on. Ctrl-C or SIGTERM stops what it started, by PID: the children first, then the
devnet if this command started it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from controlplane.serve import web_command
from controlplane.supervise import Supervisor
from devnet.state import DevnetStateError, load_state, state_path

READY_TIMEOUT = 90.0
CHILD_STOP_TIMEOUT = 10.0


class _Stop(BaseException):
    """Raised from the signal handler to unwind start-up or the wait loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def runstack_file() -> Path:
    return Path(settings.DEVNET_DIR) / "runstack.json"


STAFF_USERNAME = "admin"


def staff_account_ensure(*, username: str = STAFF_USERNAME) -> str | None:
    """The local staff account: created on the first run with a random password, which is returned (the only
    time it is known); None when the account already exists."""
    from django.contrib.auth import get_user_model
    from django.db import IntegrityError

    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(16)
    try:
        # Superuser too, so the same account can create API tokens in the admin.
        user_model.objects.create_superuser(username=username, email="", password=password)
    except IntegrityError:  # another runstack created it a moment ago
        return None
    return password


class Command(BaseCommand):
    help = (
        "Run the whole stack in the foreground: migrate, devnet, ingester, web server; Ctrl-C stops it all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address the web server binds (default 127.0.0.1)"
        )
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument(
            "--rpc-port",
            type=int,
            default=8090,
            help="port of the net/rpc (gob) intake that unmodified Aligned operators call (default 8090)",
        )
        parser.add_argument("--operators", type=int, default=5, help="operators when starting the devnet")
        parser.add_argument(
            "--no-devnet",
            action="store_true",
            help="do not start a devnet: use CHAIN_RPC_URL, SERVICE_MANAGER_ADDRESS, … from the environment",
        )

    # --- life cycle -----------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        self.supervisor = Supervisor(
            spawn=self._spawn_process, say=lambda line: self._say(f"runstack: {line}")
        )
        self.pumps: list[threading.Thread] = []
        self.use_devnet = False
        self.started_devnet = False
        self.stopping = threading.Event()
        self.defer_signals = False
        self.deferred_signal: int | None = None
        self.output_lock = threading.Lock()
        host: str = options["host"]
        port: int = options["port"]

        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port} is not a TCP port")
        if port_in_use(host, port):
            raise CommandError(f"port {port} on {host} is already in use: stop what uses it or pass --port N")
        rpc_port: int = options["rpc_port"]
        if not 1 <= rpc_port <= 65535 or rpc_port == port:
            raise CommandError(f"--rpc-port {rpc_port} is not a TCP port other than --port")
        if port_in_use(host, rpc_port):
            raise CommandError(
                f"port {rpc_port} on {host} is already in use: stop what uses it or pass --rpc-port N"
            )

        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._start(
                    host=host,
                    port=port,
                    rpc_port=rpc_port,
                    operators=options["operators"],
                    use_devnet=not options["no_devnet"],
                )
                self._wait(port=port)
            except _Stop as stop:
                self._say(f"runstack: {stop} received, stopping")
        finally:
            self.stopping.set()  # from here on a signal no longer raises: it only says to wait
            for sig in previous:
                signal.signal(sig, self._on_signal_while_stopping)
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self.defer_signals:
            self.deferred_signal = signum
            return
        raise _Stop(signum)

    def _on_signal_while_stopping(self, signum: int, frame: FrameType | None) -> None:
        self._say("runstack: already stopping, please wait")

    def _start(self, *, host: str, port: int, rpc_port: int, operators: int, use_devnet: bool) -> None:
        self.use_devnet = use_devnet
        if not use_devnet:
            self._check_chain_settings()
        self._say("runstack: applying migrations")
        call_command("migrate", interactive=False, verbosity=0)
        staff_password = staff_account_ensure()
        if staff_password is not None:
            self._say_staff_account(staff_password)  # now, in case start-up fails; again once it is up
        connections.close_all()
        if use_devnet:
            self._devnet_start(
                operators=operators,
                control_plane_url=f"http://{host}:{port}",
                control_plane_rpc=f"{host}:{rpc_port}",
            )

        # A devnet this run started is a new chain: the ledger of an earlier devnet describes nothing real.
        self._spawn(
            "ingest",
            self._manage_py("ingest", "--reset") if self.started_devnet else self._manage_py("ingest"),
        )
        self._spawn("verifier", self._manage_py("verifier"))
        self._spawn("prober", self._manage_py("probe_operators"))
        self._spawn("recovery", self._manage_py("recovery"))
        self._spawn("alerts", self._manage_py("alerts"))
        self._spawn("worker", self._manage_py("rqworker", "default", "--with-scheduler"))
        self._spawn("worker-ops", self._manage_py("rqworker", "operators"))
        self._spawn("aggregator-rpc", self._manage_py("aggregator_rpc", "--listen", f"{host}:{rpc_port}"))
        self._spawn("web", web_command(host, port))
        self._write_runstack_file(port=port)
        url = f"http://{host}:{port}"
        self._wait_ready(url)
        self._say(f"Control plane: {url}")
        self._say(f"Operators' net/rpc (gob) intake: {host}:{rpc_port}")
        self._say_staff_account(staff_password)

    def _wait(self, *, port: int) -> None:
        """Until a signal (raises _Stop): start again every child that died, and say so."""
        warned_chain = False
        while True:
            if self.supervisor.poll():
                self._write_runstack_file(port=port)
            if self.started_devnet and not warned_chain and not self._devnet_alive():
                warned_chain = True
                self._say("runstack: warning: the devnet's chain is no longer running")
            time.sleep(0.5)

    def _shutdown(self) -> None:
        self.stopping.set()
        for name, child in reversed(self.supervisor.children.items()):
            if child.running:
                self._say(f"runstack: stopping {name} (pid {child.pid})")
        self.supervisor.stop_all(timeout=CHILD_STOP_TIMEOUT)
        for pump in self.pumps:
            pump.join(timeout=2)
        if self.started_devnet:
            from devnet.network import devnet_down

            stopped = devnet_down()
            self._say("runstack: devnet down" + (f": stopped {', '.join(stopped)}" if stopped else ""))
        runstack_file().unlink(missing_ok=True)
        self._say("runstack: stopped")

    # --- devnet and chain -----------------------------------------------------------------------

    def _devnet_start(self, *, operators: int, control_plane_url: str, control_plane_rpc: str) -> None:
        from devnet.components import component_running
        from devnet.network import DevnetConfig, devnet_up

        try:
            state = load_state()
        except DevnetStateError:
            state = {}
        if component_running(state, "chain"):
            self._say(
                f"runstack: reusing the running devnet (chain pid {state['components']['chain']['pid']}, "
                f"{state.get('rpc_url')}); it stays up when runstack stops"
            )
        else:
            self._say(f"runstack: starting the devnet ({operators} operators)")
            self.started_devnet = True
            try:
                state = devnet_up(
                    config=DevnetConfig(
                        operators=operators,
                        control_plane_url=control_plane_url,
                        control_plane_rpc=control_plane_rpc,
                    )
                )
            except DevnetStateError as exc:
                raise CommandError(f"devnet: {exc}") from exc
            self._say(
                f"runstack: devnet up: chain {state['rpc_url']}, service manager "
                f"{state['contracts']['service_manager']}, {len(state['operators'])} operators; "
                f"file {state_path()}"
            )
        for name, component in state.get("components", {}).items():
            log = component.get("log")
            if name != "chain" and log:
                self._tail(name, Path(log))

    def _devnet_alive(self) -> bool:
        from devnet.components import component_running

        try:
            return component_running(load_state(), "chain")
        except DevnetStateError:
            return False

    def _check_chain_settings(self) -> None:
        from ledger.ingest.config import IngestConfigError, ingest_source_load

        try:
            source = ingest_source_load()
        except IngestConfigError as exc:
            raise CommandError(f"--no-devnet: {exc}") from exc
        self._say(f"runstack: no devnet; chain {source.rpc_url}")

    # --- children -------------------------------------------------------------------------------

    def _manage_py(self, *args: str) -> list[str]:
        return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args]

    def _logs_dir(self) -> Path:
        logs = Path(settings.DEVNET_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs

    def _spawn(self, name: str, args: list[str]) -> None:
        # A signal between Popen and the bookkeeping would leak the child: defer it until the child is recorded.
        # (Not with pthread_sigmask: children inherit a blocked mask and would then ignore SIGTERM.)
        self.defer_signals = True
        try:
            child = self.supervisor.start(name, args)
        finally:
            self.defer_signals = False
        if self.deferred_signal is not None:
            raise _Stop(self.deferred_signal)
        self._say(f"runstack: started {name} (pid {child.pid}), log {self._logs_dir() / f'{name}.log'}")

    def _spawn_process(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start one child with its output pumped here and to its log (also when the supervisor restarts it)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if (
            self.use_devnet
        ):  # its operators listen on 127.0.0.1, which operator sockets may not name otherwise
            env.setdefault("OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.BASE_DIR,
            env=env,
        )
        assert process.stdout is not None
        pump = threading.Thread(
            target=self._pump, args=(name, process.stdout, self._logs_dir() / f"{name}.log"), daemon=True
        )
        pump.start()
        self.pumps.append(pump)
        return process

    def _pump(self, name: str, stream: IO[bytes], log_path: Path) -> None:
        with stream, open(log_path, "ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                self._say(raw.decode(errors="replace").rstrip("\n"), prefix=name)

    def _tail(self, name: str, path: Path) -> None:
        """Follow a devnet component's log from its current end, prefixed like the children's output."""

        def follow() -> None:
            while not path.exists() and not self.stopping.is_set():
                time.sleep(0.5)
            if self.stopping.is_set():
                return
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                partial = b""
                while not self.stopping.is_set():
                    chunk = handle.readline()
                    if not chunk:
                        time.sleep(0.3)
                        continue
                    partial += chunk
                    if partial.endswith(b"\n"):
                        self._say(partial.decode(errors="replace").rstrip("\n"), prefix=name)
                        partial = b""

        threading.Thread(target=follow, name=f"tail-{name}", daemon=True).start()

    def _write_runstack_file(self, *, port: int) -> None:
        target = runstack_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "pid": os.getpid(),
            "port": port,
            "started_devnet": self.started_devnet,
            "children": self.supervisor.pids(),
        }
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, target)

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.supervisor.poll()  # a child that dies while starting is started again, and said so
            try:
                if requests.get(url + "/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise CommandError(f"{url} did not answer 200 within {READY_TIMEOUT:.0f} s")

    # --- output ---------------------------------------------------------------------------------

    def _say_staff_account(self, password: str | None) -> None:
        if password is None:
            self._say(
                f"runstack: log in as staff user {STAFF_USERNAME!r} (created on the first run); forgot its "
                f"password? python manage.py changepassword {STAFF_USERNAME}"
            )
            return
        self._say(
            "runstack: created the local staff account; its password is shown only on this first run:\n"
            f"    username: {STAFF_USERNAME}\n"
            f"    password: {password}\n"
            f"  (change it with: python manage.py changepassword {STAFF_USERNAME})"
        )

    def _say(self, line: str, *, prefix: str | None = None) -> None:
        """One line on the terminal; a child's or component's lines carry its name."""
        with self.output_lock:
            self.stdout.write(line if prefix is None else f"{prefix:<8}| {line}")
            self.stdout.flush()
