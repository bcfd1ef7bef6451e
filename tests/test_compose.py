"""docker-compose.yml and the Dockerfile, checked without a Docker engine: what they run must exist here."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from django.core.management import get_commands, load_command_class

from controlplane.serve import web_command

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("web", "worker", "ingest")
SHELL_SEPARATORS = re.compile(r"&&|\|\||[;&{}]")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|(^|_)KEY$", re.IGNORECASE)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _interpolate(text: str) -> str:
    """What compose substitutes with an empty .env: ``${X:-default}`` → default, ``${X:?…}``/``${X}`` → a value."""

    def replace(match: re.Match[str]) -> str:
        kind, default = match.group(2), match.group(3)
        return default if kind == "-" else "value"

    return INTERPOLATION.sub(replace, text)


def _argvs(service: dict[str, Any]) -> list[list[str]]:
    """Every program invocation in a service's command, shell scripts split on ``&&``, ``;``, ``&`` and braces."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, list) and command[:2] == ["sh", "-c"]:
        script = command[2]
    elif isinstance(command, list):
        return [[_interpolate(str(part)) for part in command]]
    else:
        script = command
    argvs = [shlex.split(part) for part in SHELL_SEPARATORS.split(_interpolate(script))]
    return [[arg for arg in argv if arg != "exec"] for argv in argvs if argv]


def _manage_py_calls() -> list[tuple[str, list[str]]]:
    calls = []
    for name, service in _services().items():
        for argv in _argvs(service):
            if "manage.py" in argv:
                calls.append((name, argv[argv.index("manage.py") + 1 :]))
    return calls


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def test_it_defines_the_services_of_the_stack() -> None:
    services = _services()

    assert {"postgres", "redis", "web", "worker", "ingest", "devnet"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["devnet"]["profiles"] == ["devnet"]
    for name in ("web", "worker", "ingest"):
        assert "profiles" not in services[name], name
    # The image's python runs what web_command builds everywhere else.
    assert ["python", *web_command("0.0.0.0", 8000)[1:]] in _argvs(services["web"])
    assert ["python", "manage.py", "rqworker", "default", "--with-scheduler"] in _argvs(services["worker"])
    assert ["python", "manage.py", "rqworker", "operators"] in _argvs(services["worker-operators"])
    assert ["python", "manage.py", "ingest"] in _argvs(services["ingest"])
    assert ["python", "manage.py", "migrate", "--noinput"] in _argvs(services["web"])


def test_it_runs_the_web_server_that_web_command_builds_in_the_image_and_in_compose() -> None:
    expected = ["python", *web_command("0.0.0.0", 8000)[1:]]
    cmd = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]

    assert len(cmd) == 1
    assert json.loads(cmd[0].removeprefix("CMD ")) == expected
    assert expected in _argvs(_services()["web"])
    # The number of workers is the operator's to set, through the environment like every other setting.
    assert _environment(_services()["web"])["WEB_WORKERS"] == "${WEB_WORKERS:-}"


def test_it_runs_only_management_commands_that_exist_with_arguments_they_accept() -> None:
    calls = _manage_py_calls()
    commands = get_commands()

    assert {service for service, _ in calls} >= {"web", "worker", "ingest", "devnet"}
    for service, args in calls:
        name, rest = args[0], args[1:]
        assert name in commands, f"{service}: `manage.py {name}` is not a management command"
        command = load_command_class(commands[name], name)
        command.create_parser("manage.py", name).parse_args(rest)  # raises CommandError on a bad option


def test_it_serves_an_asgi_application_that_imports() -> None:
    module, _, attribute = "controlplane.asgi:application".partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_it_keeps_redis_persistent_and_the_data_on_volumes() -> None:
    compose = _compose()
    services = compose["services"]

    redis_argv = _argvs(services["redis"])[0]
    assert redis_argv[redis_argv.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    named = set(compose["volumes"])
    for service in ("postgres", "redis"):
        for volume in services[service]["volumes"]:
            assert volume.split(":", 1)[0] in named, volume


def test_it_starts_the_apps_only_once_postgres_and_redis_are_healthy() -> None:
    services = _services()

    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        for dependency in ("postgres", "redis"):
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)
    for name in ("worker", "ingest"):
        assert services[name]["depends_on"]["web"]["condition"] == "service_healthy"  # after migrate
    assert services["ingest"]["depends_on"]["devnet"]["required"] is False


def test_it_configures_the_apps_only_through_the_environment() -> None:
    services = _services()

    for name in (*APP_SERVICES, "devnet"):
        env = _environment(services[name])
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY_FILE", "CHAIN_RPC_URL"} <= set(env), name
        assert env["DATABASE_URL"].startswith("postgres://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert env["SECRET_KEY_FILE"].startswith("/run/secrets/")
        assert "secret_key" in services[name]["secrets"]
        assert _interpolate(env.get("DEBUG", "0")).lower() in {"", "0", "false", "no", "off"}, name


def test_it_writes_no_secret_value_in_the_file() -> None:
    compose = _compose()
    text = COMPOSE.read_text()

    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), (name, key)
            elif SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(value)
                assert match, f"{name}: {key} must come from the environment (${{{key}}}), not the file"
                assert match.group(2) != "-" or not match.group(3), f"{name}: {key} has a default value"
            for url in re.findall(r"[a-z]+://[^\s\"']+", value):
                userinfo = url.split("://", 1)[1].split("@", 1)
                if len(userinfo) == 2 and ":" in userinfo[0]:
                    password = userinfo[0].split(":", 1)[1]
                    assert INTERPOLATION.fullmatch(password), (
                        f"{name}: {key} has a password written in the file"
                    )
    for secret in compose["secrets"].values():
        assert set(secret) <= {"file", "environment", "external", "name"}, secret
    assert not re.search(r"\b(0x)?[0-9a-fA-F]{32,}\b", text), "a key-like hex string is written in the file"


def test_it_builds_from_python_3_11_slim_copying_files_that_exist() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}

    assert "FROM python:3.11-slim" in lines
    text = DOCKERFILE.read_text()
    assert "npm ci" in text
    assert "pip install --no-cache-dir ." in text
    assert "collectstatic --noinput" in text
    for line in lines:
        if line.startswith("COPY") and "--from=" not in line:
            sources = shlex.split(line)[1:-1]
            for source in sources:
                if source != ".":
                    assert (ROOT / source).exists(), line
                    assert source not in ignored, line
    assert {".env", "secrets", ".venv", "node_modules", ".devnet"} <= ignored


def test_it_can_collect_static_files_at_build_time_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRET_KEY")}
    env.update(
        {
            "DEBUG": "1",
            "STATIC_ROOT": str(tmp_path / "static"),
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        }
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "admin" / "css" / "base.css").exists()


def test_it_restarts_every_long_running_service_that_dies() -> None:
    services = _services()

    for name, service in services.items():
        if name == "devnet":
            continue  # a fresh chain per start: restarting it would silently replace the chain
        assert service.get("restart") in {"always", "unless-stopped"}, name


def test_it_can_point_the_control_plane_at_a_real_aggregator_and_operators() -> None:
    for name in (*APP_SERVICES, "recovery"):
        env = _environment(_services()[name])
        assert {"AGGREGATOR_URL", "OPERATOR_CONTROL_TOKENS"} <= set(env), name
        # Taken from .env (or left unset), never written in the file.
        assert env["OPERATOR_CONTROL_TOKENS"].startswith("${")
