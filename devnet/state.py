"""The devnet's one JSON file: RPC URL, contract addresses, keys and the PIDs of what it started.

The rest of the devnet and the control plane's defaults read it. It holds private keys of a throwaway
network, so it is written 0600 and atomically (write to a temp file, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

STATE_VERSION = 1


class DevnetStateError(RuntimeError):
    pass


def state_path(path: Path | str | None = None) -> Path:
    return Path(path) if path is not None else Path(settings.DEVNET_FILE)


def load_state(path: Path | str | None = None) -> dict[str, Any]:
    target = state_path(path)
    try:
        raw = target.read_text()
    except FileNotFoundError as exc:
        raise DevnetStateError(
            f"no devnet file at {target}: start one with `python manage.py devnet up`"
        ) from exc
    try:
        state = json.loads(raw)
    except ValueError as exc:
        raise DevnetStateError(f"devnet file {target} is not valid JSON: {exc}") from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise DevnetStateError(f"devnet file {target} has an unknown format")
    return state


def save_state(state: dict[str, Any], path: Path | str | None = None) -> Path:
    target = state_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".devnet-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
