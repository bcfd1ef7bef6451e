"""Child processes that are started again when they die: ``make run`` (runstack) and the chaos suite.

A child that exits on its own is started again after a backoff (1, 2, 4 … up to a cap, reset once it ran long
enough to count as healthy), and every exit and restart is said in one line. A child stopped on purpose
(``stop(..., hold=True)``) stays stopped until ``resume``. Everything is done by PID.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.processes import stop_pid

Spawn = Callable[[str, list[str]], "subprocess.Popen[bytes]"]


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    unexpected_exits: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    held: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(
        self,
        *,
        spawn: Spawn,
        say: Callable[[str], object],
        backoff_first: float = 1.0,
        backoff_cap: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.spawn = spawn
        self.say = say
        self.backoff_first = backoff_first
        self.backoff_cap = backoff_cap
        self.healthy_after = healthy_after
        self.children: dict[str, Child] = {}
        # poll() may run on a thread of its own while another stops and resumes children.
        self._lock = threading.RLock()

    def start(self, name: str, args: list[str]) -> Child:
        with self._lock:
            child = self.children.setdefault(name, Child(name=name, args=args))
            child.args = args
            self._launch(child)
            return child

    def _launch(self, child: Child) -> None:
        child.process = self.spawn(child.name, child.args)
        child.started_at = time.monotonic()
        child.starts += 1
        child.restart_at = None
        child.held = False

    def pids(self) -> dict[str, int]:
        return {name: child.pid for name, child in self.children.items() if child.pid is not None}

    def poll(self) -> list[str]:
        """Notice exits and start again what is due; the names of the children (re)started now."""
        with self._lock:
            return self._poll()

    def _poll(self) -> list[str]:
        now = time.monotonic()
        started = []
        for child in self.children.values():
            if child.held or child.process is None:
                continue
            code = child.process.poll()
            if code is not None and child.restart_at is None:
                ran = now - child.started_at
                child.failures_in_row = 1 if ran >= self.healthy_after else child.failures_in_row + 1
                child.unexpected_exits += 1
                delay = min(self.backoff_cap, self.backoff_first * 2 ** (child.failures_in_row - 1))
                child.restart_at = now + delay
                self.say(
                    f"{child.name} (pid {child.process.pid}) exited with status {code} after {ran:.1f} s; "
                    f"starting it again in {delay:g} s"
                )
            if child.restart_at is not None and now >= child.restart_at:
                self._launch(child)
                self.say(f"{child.name} started again (pid {child.pid}, start #{child.starts})")
                started.append(child.name)
        return started

    def stop(self, name: str, *, kill: bool = False, hold: bool = True, timeout: float = 10.0) -> None:
        """Stop one child (SIGTERM, or SIGKILL). ``hold`` keeps it stopped until ``resume``; without it the
        child is started again after the first backoff, as after a crash (the chaos suite's kills)."""
        with self._lock:
            child = self.children[name]
            child.held = hold
            if child.process is not None and child.process.poll() is None:
                stop_pid(child.process.pid, sig=signal.SIGKILL if kill else signal.SIGTERM, timeout=timeout)
                try:
                    child.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
            if not hold:
                child.restart_at = time.monotonic() + self.backoff_first

    def resume(self, name: str) -> None:
        with self._lock:
            child = self.children[name]
            if not child.running:
                self._launch(child)

    def stop_all(self, *, timeout: float = 10.0) -> None:
        with self._lock:
            for name in reversed(list(self.children)):
                self.stop(name, hold=True, timeout=timeout)
