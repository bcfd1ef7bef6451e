"""The Go programs of the tests (tests/go/*/main.go, standard library only), built once per session.

``make test`` installs Debian's golang-go when it is missing; without it these tests fail and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from controlplane.netrpc import Client
from intake.wire import EMPTY

ROOT = Path(__file__).resolve().parent / "go"
CACHE = Path(tempfile.gettempdir()) / "controlplane-go-cache"


def go_build(name: str, out_dir: Path) -> Path:
    """``tests/go/<name>/main.go`` built into ``out_dir``; its path."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "Go is not installed: `make test` installs Debian's golang-go (apt-get install golang-go)"
        )
    binary = out_dir / name
    env = {**os.environ, "GOCACHE": str(CACHE), "GOPATH": str(CACHE / "gopath")}
    done = subprocess.run(
        [go, "build", "-o", str(binary), str(ROOT / name / "main.go")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"go build of {name} failed:\n{done.stderr}")
    return binary


class GoAggregator:
    """An unmodified Go aggregator (tests/go/aggregator: net/rpc over HTTP) answering every signature with
    ``reply``; ``received()`` reads the next signature it printed (hex, field elements in standard form)."""

    def __init__(self, binary: Path, *, reply: int = 0) -> None:
        self.process = subprocess.Popen(
            [str(binary), str(reply)], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().split()
        if first[:1] != ["listening"]:
            self.stop()
            raise RuntimeError(f"the Go aggregator did not start: {first}")
        self.address = first[1]

    def received(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        return dict(json.loads(self.process.stdout.readline()))

    def connections(self) -> int:
        """How many connections it has accepted so far (this question's own included)."""
        host, _, port = self.address.rpartition(":")
        client = Client(host, int(port), timeout=5)
        try:
            return int(client.call("Aggregator.Connections", EMPTY, {}))
        finally:
            client.close()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
