"""A PostgreSQL cluster and a Redis server of our own, on ports of our own, that can be restarted and crashed
without touching the machine's shared ones: for the chaos suite and the tests of outage handling.

Postgres comes from Debian's binaries (``initdb`` and ``pg_ctl`` of the installed major version). As root they
run as the ``postgres`` user, which owns the data directory. Redis is ``redis-server`` without persistence,
like the devnet's: a restart loses everything in it, which the control plane must survive.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from devnet.anvil import free_port, pid_alive, stop_pid

PG_ROOT = Path("/usr/lib/postgresql")


class InfraError(RuntimeError):
    """A server of ours did not start or stop as asked."""


def pg_bin(name: str) -> Path:
    """The newest installed major version's ``name`` (initdb, pg_ctl)."""
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / name).exists()), key=lambda p: int(p.parent.name)
    )
    if not versions:
        raise InfraError(
            f"PostgreSQL's {name} was not found under {PG_ROOT} (Debian: apt-get install postgresql)"
        )
    return versions[-1] / name


class PostgresServer:
    """One cluster in ``directory`` on 127.0.0.1:``port``; ``restart(mode="immediate")`` is a crash."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # The cluster runs as the postgres user, who must reach its directory. The caller's may be private,
            # and can become so again at any time (pytest makes its temp root 0700 at every session's start):
            # so the cluster gets a directory of its own under the system's temp directory.
            directory = Path(tempfile.mkdtemp(prefix="controlplane-postgres-"))
        self.directory = directory
        self.data = directory / "data"
        self.port = port or free_port()
        self.log = directory / "postgres.log"

    def _run(
        self, *args: str | Path, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self._as_root:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise InfraError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )
        return done

    def init(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self._run(
            pg_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# chaos suite: a cluster of its own\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.data}'\n"
                "max_connections = 300\n"
                "shared_buffers = 32MB\n"
                # Durability is what a crash (-m immediate) tests: keep fsync and synchronous commit on.
                "fsync = on\n"
                "synchronous_commit = on\n"
            )
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        self._run(
            pg_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", action, *extra, timeout=90
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self, *, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, *, mode: str = "fast") -> None:
        """``fast``: a clean restart; ``immediate``: every process killed at once, recovery from the WAL."""
        self._ctl("restart", "-m", mode)

    def running(self) -> bool:
        return self._run(pg_bin("pg_ctl"), "-D", self.data, "status", check=False).returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's PID, from its pid file; None when there is none."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self, *, say: Callable[[str], object] = print) -> None:
        """Stop the cluster (a crash is fine: it is thrown away) and delete it; a postmaster that outlives
        ``pg_ctl stop`` (one an interrupted restart left starting) is killed by its PID, and said so."""
        if self.data.exists():
            failure = ""
            try:
                self.stop(mode="immediate")
            except (InfraError, subprocess.TimeoutExpired) as exc:
                failure = str(exc)
                # An interrupted restart may have a postmaster starting: give it time to write its pid file.
                deadline = time.monotonic() + 10
                while self.postmaster_pid() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
            pid = self.postmaster_pid()
            if pid is not None and pid_alive(pid):
                stop_pid(pid, sig=signal.SIGQUIT, timeout=5)
                say(
                    f"postgres on port {self.port} outlived pg_ctl stop ({failure or 'no error'}): killed pid {pid}"
                )
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` without persistence, started and stopped by its PID."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise InfraError("redis-server was not found (Debian: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (the child keeps it)
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid = process.pid
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise InfraError(
            f"redis-server on port {self.port} did not answer; see {self.directory / 'redis.log'}"
        )

    def stop(self, *, kill: bool = False) -> None:
        if self.pid is not None and pid_alive(self.pid):
            stop_pid(self.pid, sig=signal.SIGKILL if kill else signal.SIGTERM)
        self.pid = None

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def restart(self) -> None:
        """A Redis restart without persistence: every queued job, lock and sequence in it is gone."""
        self.stop()
        self.start()

    def flush(self) -> None:
        redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1).flushall()
