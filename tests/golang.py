"""The Go programs of the tests (tests/go/*/main.go, standard library only), built once per session.

``make test`` installs Debian's golang-go when it is missing; without it these tests fail and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

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
