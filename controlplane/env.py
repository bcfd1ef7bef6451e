"""Typed environment readers that fail loudly.

Every setting comes from the environment (or a ``NAME_FILE`` path for secrets). A value that is present
but malformed is an error at start-up, never a silent fallback to the default.
"""

from __future__ import annotations

import os
from pathlib import Path


class ImproperlyConfiguredEnv(RuntimeError):
    """A setting read from the environment is missing or malformed."""


def _raw(name: str) -> str | None:
    """The value of ``name``, or the contents of the file named by ``name_FILE``."""
    value = os.environ.get(name)
    file_path = os.environ.get(f"{name}_FILE")
    if value is not None and file_path:
        raise ImproperlyConfiguredEnv(f"set either {name} or {name}_FILE, not both")
    if file_path:  # an empty NAME_FILE (a deployment template's blank) is unset
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfiguredEnv(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return value


def env_str(name: str, default: str | None = None) -> str:
    value = _raw(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfiguredEnv(f"{name} is required")
        return default
    return value


def env_optional_str(name: str) -> str | None:
    value = _raw(name)
    return value if value else None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        parsed = int(value.strip(), 0)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from exc
    if minimum is not None and parsed < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={parsed} must be >= {minimum}")
    return parsed


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        parsed = float(value.strip())
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a number") from exc
    if minimum is not None and parsed < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={parsed} must be >= {minimum}")
    return parsed


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None or value.strip() == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]
