"""The control plane's processes as `make run` starts them, supervised, for the scenarios, the chaos suite and
the browser tests: ``ControlPlane`` starts each as a child that is started again when it dies."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from django.conf import settings

from controlplane.serve import web_command
from controlplane.supervise import Supervisor
from devnet.components import manage_py_args

# Short intervals, so a scenario takes about a minute; the failure modes are those of the defaults.
CONTROL_PLANE_ENV = {
    "INGEST_CONFIRMATIONS": "0",
    "INGEST_POLL_INTERVAL": "0.5",
    "VERIFIER_POLL_INTERVAL": "0.5",
    "RECOVERY_INTERVAL": "0.5",
    "RECOVERY_BACKOFF_CAP": "3",
    "RECOVERY_CATCHUP_GRACE": "3",
    "RECOVERY_CATCHUP_ASK_CAP": "10",
    "LIVENESS_PROBE_INTERVAL": "1",
    "LIVENESS_PROBE_TIMEOUT": "0.5",
    "RECOVERY_LEASE_SECONDS": "5",
    "ALERTS_INTERVAL": "1",
    # The devnet's operators listen on 127.0.0.1, which operator sockets may not name otherwise.
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    # ... and all post from that one address: the per-address limit is for one operator's worth.
    "INTAKE_RATE": "6000/min",
}


def standby_env(state: dict[str, Any], directory: Path) -> dict[str, str]:
    """Settings that turn on the control plane's standby responder with the devnet aggregator's key.

    The key goes to a file only its owner can read, passed as AGGREGATOR_PRIVATE_KEY_FILE (as a deployment
    passes a secret); the standby answers a stuck batch a few blocks after replays began.
    """
    key_file = directory / "aggregator.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(str(state["accounts"]["aggregator"]["private_key"]) + "\n")
    return {
        "STANDBY_RESPONDER": "1",
        "AGGREGATOR_PRIVATE_KEY_FILE": str(key_file),
        "STANDBY_AFTER_BLOCKS": "3",
    }


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


DEFAULT_WORKERS = ("cp-worker", "cp-worker-2")


class ControlPlane:
    """ingest, verifier, probe_operators, recovery, alerts, RQ workers, aggregator_rpc (given ``rpc_address``) and
    the web server (uvicorn's workers), each logging to
    ``logs/<name>.log``; a child that dies is started again (after 1, 2, 4 … s) and the restart is logged to
    ``logs/supervisor.log``."""

    def __init__(
        self, *, url: str, logs: Path, env: dict[str, str] | None = None, rpc_address: str | None = None
    ) -> None:
        parsed = urlparse(url)
        self.url = url
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.env = env if env is not None else {**os.environ, **CONTROL_PLANE_ENV}
        self.env.setdefault("SECRET_KEY", "scenario-only")
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.commands = {
            "cp-ingest": manage_py_args("ingest"),
            "cp-verifier": manage_py_args("verifier"),
            "cp-prober": manage_py_args("probe_operators"),
            "cp-recovery": manage_py_args("recovery"),
            "cp-alerts": manage_py_args("alerts"),
            # Two on the default queue: a recovery job mostly waits on the aggregator, and an aggregator restart
            # replays every pending batch, one job each (measured: 20 replays in 5.0 s with two, 6.8 s with one).
            **{name: manage_py_args("rqworker", "default") for name in DEFAULT_WORKERS},
            "cp-worker-ops": manage_py_args("rqworker", "operators"),
            # The operators' net/rpc (gob) intake, when they send over gob.
            **({"cp-rpc": manage_py_args("aggregator_rpc", "--listen", rpc_address)} if rpc_address else {}),
            "cp-web": web_command(parsed.hostname or "127.0.0.1", parsed.port or 8000),
        }
        self.supervisor = Supervisor(spawn=self._spawn, say=self._say, backoff_first=1.0, backoff_cap=10.0)
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    def manage(self, *args: str, timeout: float = 300) -> None:
        """Run one management command with the control plane's environment (migrate, say)."""
        done = subprocess.run(
            manage_py_args(*args),
            env=self.env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def start(self, *, reset_ledger: bool = True) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        if reset_ledger:  # a new devnet is a new chain: the ledger of an earlier one describes nothing real
            self.manage("ingest", "--reset", "--once")
        for name in self.commands:
            self.start_one(name)
        self.watch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answers(self.url + "/healthz"):
            time.sleep(0.2)

    def watch(self) -> None:
        """Start again, from a thread of its own, every child that dies."""
        if self._watcher is not None:
            return

        def loop() -> None:
            while not self._watching.wait(0.2):
                self.supervisor.poll()

        self._watcher = threading.Thread(target=loop, name="control-plane-supervisor", daemon=True)
        self._watcher.start()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=settings.BASE_DIR,
            )

    def _say(self, line: str) -> None:
        with open(self.logs / "supervisor.log", "a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def start_one(self, name: str) -> None:
        if name in self.supervisor.children:
            self.supervisor.resume(name)
        else:
            self.supervisor.start(name, self.commands[name])

    def stop_one(self, name: str, *, kill: bool = False) -> None:
        """Stop (or SIGKILL) one process and keep it stopped until ``start_one``."""
        self.supervisor.stop(name, kill=kill, hold=True)

    def crash(self, name: str) -> None:
        """SIGKILL one process; its supervisor starts it again, as any deployment's would."""
        self.supervisor.stop(name, kill=True, hold=False)

    def unexpected_exits(self) -> dict[str, int]:
        """Exits nobody asked for (a process that died by itself), by process."""
        return {
            name: c.unexpected_exits for name, c in self.supervisor.children.items() if c.unexpected_exits
        }

    def stop(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with contextlib.suppress(Exception):
            self.supervisor.stop_all(timeout=10)
