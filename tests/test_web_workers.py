"""The web process with several workers, as real processes: `python -m controlplane.serve` (uvicorn) on a free port,
real Postgres and Redis. Which process answers a connection is read from /proc: the worker holding the server side
of that connection's socket."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import requests
from django.conf import settings
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from controlplane.processes import pid_alive, stop_pid
from controlplane.serve import web_command
from devnet.anvil import free_port
from ledger.models import Batch
from tests.chain_fixtures import net_deploy, signed_response

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
TIMEOUT = 30.0
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


# --- /proc ----------------------------------------------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """Live children of ``pid`` with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found[int(entry)] = command
    return found


def tcp_sockets() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 TCP socket on 127.0.0.1."""
    rows = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if local[0] == "0100007F":
                rows.append((int(local[1], 16), int(remote[1], 16), fields[3], int(fields[9])))
    return rows


def holder(inode: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode`` open."""
    needle = f"socket:[{inode}]"
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == needle:
                    return pid
            except OSError:
                continue
    return None


def listening(port: int) -> bool:
    return any(local == port and state == "0A" for local, _, state, _ in tcp_sockets())


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    seen_workers: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        found = sorted(pid for pid, command in children(self.process.pid).items() if "spawn_main" in command)
        self.seen_workers.update(found)
        return found

    def answers(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def owner(self, client_port: int) -> int | None:
        """The process holding the server side of the connection from ``client_port``."""
        for local, remote, state, inode in tcp_sockets():
            if local == self.port and remote == client_port and state == "01":
                return holder(inode, [self.process.pid, *self.workers()])
        return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(tmp_path: Path, env: dict[str, str], *, workers: int | None, port: int | None = None) -> Server:
    port = port or free_port()
    log = tmp_path / f"web-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            web_command("127.0.0.1", port, workers=workers),
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(port=port, process=process, log=log)


@contextmanager
def serving(
    tmp_path: Path, env: dict[str, str], *, workers: int = WORKERS, port: int | None = None
) -> Iterator[Server]:
    """A server answering /healthz with ``workers`` worker processes; stopped (and every worker it had) by PID after."""
    server = start(tmp_path, env, workers=workers, port=port)
    try:
        wait_for(
            "the server to answer with all its workers",
            lambda: server.process.poll() is None and len(server.workers()) == workers and server.answers(),
        )
        yield server
    except BaseException:
        print(server.output())
        raise
    finally:
        stop_pid(server.process.pid, timeout=10)
        server.process.wait(timeout=10)
        for pid in server.seen_workers:
            if pid_alive(pid):
                stop_pid(pid)


@pytest.fixture
def env(django_db_setup: None, django_db_blocker: Any) -> dict[str, str]:
    """The test database and this run's Redis database; logs quiet enough to read."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "SECRET_KEY": "test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def owners_of_new_connections(server: Server, *, until: Callable[[set[int]], bool]) -> set[int]:
    """Open connections one at a time (each answered, then kept open) until the processes that answered them
    satisfy ``until``; returns those processes."""
    owners: set[int] = set()
    connections: list[http.client.HTTPConnection] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while not until(owners):
            assert time.monotonic() < deadline, f"only {owners} answered {len(connections)} connections"
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connections.append(connection)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert connection.sock is not None
            owner = server.owner(connection.sock.getsockname()[1])
            assert owner is not None
            owners.add(owner)
    finally:
        for connection in connections:
            connection.close()
    return owners


# --- tests ----------------------------------------------------------------------------------------


def test_it_answers_from_every_worker_process_and_never_from_the_parent(tmp_path, env):
    with serving(tmp_path, env) as server:
        workers = server.workers()

        owners = owners_of_new_connections(server, until=lambda owners: owners >= set(workers))

        assert len(workers) == WORKERS
        assert owners == set(workers)  # the parent only binds the port and watches its workers
        response = requests.get(server.url + "/healthz", timeout=5)
        assert "server" not in response.headers  # uvicorn's Server header is off


def test_it_serves_the_dashboards_static_files_itself_without_debug(tmp_path, env):
    with serving(tmp_path, {**env, "DEBUG": "0"}) as server:
        for path, kind in (
            ("/static/vendor/htmx/htmx.min.js", "javascript"),
            ("/static/dashboard/dashboard.css", "css"),
        ):
            response = requests.get(server.url + path, timeout=10)

            assert response.status_code == 200, path
            assert kind in response.headers["Content-Type"]
            assert response.content


def test_it_believes_no_forwarded_header_from_a_peer_that_is_no_trusted_proxy(tmp_path, env):
    # Two posts a minute per source, counted in Redis (shared by the workers). If the server believed
    # X-Forwarded-For, each post below would be a new source; it is 127.0.0.1 each time.
    redis.Redis.from_url(settings.REDIS_URL).delete("rate:intake:127.0.0.1")
    with serving(tmp_path, {**env, "INTAKE_RATE": "2/min", "TRUSTED_PROXIES": ""}) as server:
        statuses = [
            requests.post(
                server.url + "/api/v1/signatures",
                data="{}",
                headers={"X-Forwarded-For": f"203.0.113.{i}", "Connection": "close"},
                timeout=10,
            ).status_code
            for i in range(1, 4)
        ]

    assert statuses == [400, 400, 429]


@pytest.mark.django_db(transaction=True)
def test_it_sends_live_changes_to_sockets_on_every_worker(tmp_path, env, anvil):
    net = net_deploy(anvil, operators=3)
    root = net.create_task(seed=57)
    net.ingester().sync_once()
    assert Batch.objects.count() == 1
    with (
        serving(tmp_path, {**env, **net.env(), "PUBLIC_DASHBOARD": "1", "LOG_LEVEL": "WARNING"}) as server,
        ExitStack() as open_sockets,
    ):
        workers = set(server.workers())
        sockets: list[ClientConnection] = []
        owners: set[int] = set()
        deadline = time.monotonic() + TIMEOUT
        while owners != workers or len(sockets) < 2 * WORKERS:
            assert time.monotonic() < deadline, f"sockets reached only {owners} of {workers}"
            socket = open_sockets.enter_context(
                connect(
                    f"ws://127.0.0.1:{server.port}/ws/quorum/", origin=Origin(server.url), open_timeout=10
                )
            )
            sockets.append(socket)
            assert json.loads(socket.recv(timeout=10))["type"] == "snapshot"
            owner = server.owner(socket.socket.getsockname()[1])
            assert owner in workers
            owners.add(owner)

        body = signed_response(net, root=root, operator=0)
        posted = requests.post(server.url + "/api/v1/signatures", data=json.dumps(body), timeout=10)
        assert posted.status_code == 202

        # Wherever a socket is, it gets the change: one worker's relay sends it through the Redis channel layer.
        for socket in sockets:
            deadline = time.monotonic() + TIMEOUT
            while True:
                message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
                if message["type"] == "change" and message["kind"] == "signature.accepted":
                    assert message["operator"] == body["operatorId"]
                    break


def test_it_replaces_a_worker_that_dies(tmp_path, env):
    with serving(tmp_path, env) as server:
        first, second = server.workers()

        os.kill(first, signal.SIGKILL)

        def replacement() -> list[int] | None:
            workers = server.workers()
            return workers if len(workers) == WORKERS and first not in workers else None

        replaced = wait_for("a new worker in place of the killed one", replacement)
        assert second in replaced
        owners = owners_of_new_connections(server, until=lambda owners: owners >= set(replaced))
        assert owners == set(replaced)


def test_it_leaves_no_worker_holding_the_port_when_the_parent_is_killed(tmp_path, env):
    with serving(tmp_path, env) as server:
        workers = server.workers()
        assert listening(server.port)

        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)

        wait_for("every worker to die with its parent", lambda: not any(pid_alive(pid) for pid in workers))
        wait_for("nothing to listen on the port", lambda: not listening(server.port))
        with serving(tmp_path, env, port=server.port) as replacement:  # as a supervisor would start it again
            assert replacement.answers()


def test_it_stops_every_worker_on_sigterm(tmp_path, env):
    with serving(tmp_path, env) as server:
        workers = server.workers()

        server.process.send_signal(signal.SIGTERM)

        assert server.process.wait(timeout=20) == 0
        assert not any(pid_alive(pid) for pid in workers)
        assert not listening(server.port)


@pytest.mark.parametrize(
    ("variables", "argv_workers", "message"),
    [
        ({"WEB_WORKERS": "0"}, None, "controlplane.serve: WEB_WORKERS=0 must be >= 1"),
        ({"WEB_WORKERS": "two"}, None, "controlplane.serve: WEB_WORKERS='two' is not an integer"),
        ({}, 0, "argument --workers: 0 must be >= 1"),
    ],
)
def test_it_refuses_a_bad_number_of_workers_in_one_line(tmp_path, env, variables, argv_workers, message):
    port = free_port()
    done = subprocess.run(
        web_command("127.0.0.1", port, workers=argv_workers),
        env={**env, **variables},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not listening(port)


def test_it_stops_with_a_failure_status_when_the_workers_cannot_load_the_application(tmp_path, env):
    # Settings that load (the parent reads them) with an app that does not exist (only the workers set up Django).
    (tmp_path / "broken_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\nINSTALLED_APPS = [*INSTALLED_APPS, 'no_such_app']  # noqa: F405\n"
    )
    broken = {
        **env,
        "DJANGO_SETTINGS_MODULE": "broken_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    server = start(tmp_path, broken, workers=WORKERS)
    try:
        status = server.process.wait(timeout=60)
    finally:
        if server.process.poll() is None:
            stop_pid(server.process.pid)

    assert status == 3, server.output()  # uvicorn's start-up failure, not a clean exit nor endless restarts
    assert "the ASGI application did not load" in server.output()
    assert "no_such_app" in server.output()
    assert not listening(server.port)


def test_it_runs_one_worker_per_usable_core_by_default(env):
    cores = sorted(os.sched_getaffinity(0))
    script = "from django.conf import settings; print(settings.WEB_WORKERS)"
    environment = {k: v for k, v in env.items() if k != "WEB_WORKERS"}

    def read(preexec: Callable[[], None] | None = None) -> int:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**environment, "DJANGO_SETTINGS_MODULE": "controlplane.settings"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=preexec,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert read() == len(cores)
    assert read(lambda: os.sched_setaffinity(0, {cores[0]})) == 1
