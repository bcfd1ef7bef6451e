"""The web side under hostile requests: oversized bodies, odd filter values, password guessing, and the
settings a deployment without DEBUG gets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.asgi import application
from tests.redis_keys import redis_forget

ROOT = Path(__file__).resolve().parent.parent


def call(path: str, *, headers: list[tuple[bytes, bytes]], chunks: int, chunk: bytes) -> tuple[int, int]:
    """Send a POST through the real ASGI application; (status, how many body chunks it read)."""
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        if reads >= chunks:  # the body is all sent: the client waits for the answer
            await asyncio.Event().wait()
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": reads < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(application(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), reads


def test_it_refuses_a_declared_oversized_intake_body_without_reading_it() -> None:
    status, reads = call(
        "/api/v1/signatures", headers=[(b"content-length", b"10000000")], chunks=10_000, chunk=b"x" * 1000
    )
    assert (status, reads) == (413, 0)


def test_it_stops_reading_an_undeclared_stream_at_the_limit() -> None:
    status, reads = call("/api/v1/signatures", headers=[], chunks=1_000_000, chunk=b"x" * 1024)
    assert status == 413
    assert reads == 5, "4 KB in: the fifth kilobyte crossed the limit, nothing after it was read"


@pytest.mark.django_db(transaction=True)
def test_it_applies_the_general_limit_elsewhere(settings: Any) -> None:
    settings.REQUEST_MAX_BODY_BYTES = 2048
    status, reads = call(
        "/api/v1/recovery/replays", headers=[(b"content-length", b"4096")], chunks=4, chunk=b"x" * 1024
    )
    assert (status, reads) == (413, 0)
    status, _ = call("/api/v1/recovery/replays", headers=[(b"content-length", b"2")], chunks=1, chunk=b"{}")
    assert status == 401, "within the limit: on to Django (which wants credentials)"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "moment",
    [
        "2026-01-01T00:00+20:00",
        "2026-01-01T00:00:00-23:59",
        "9999-12-31T23:59-23:59",
        "0001-01-01T00:00+14:00",
    ],
)
def test_it_reads_any_offset_in_the_dashboards_time_filter_without_a_500(client: Any, moment: str) -> None:
    client.force_login(User.objects.create_user("viewer"))
    assert client.get("/batches/", {"since": moment, "until": moment}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["²", "١٢", "99999999999999999999999"])
def test_it_takes_only_ascii_digits_for_ids_and_pages(client: Any, value: str) -> None:
    client.force_login(User.objects.create_user("viewer"))
    assert client.get(f"/api/v1/recovery/runs/{value}").status_code == 404
    assert client.get("/api/v1/alerts/", {"page": value}).status_code in (400, 404)


@pytest.mark.django_db
def test_it_limits_login_attempts_per_address_on_both_forms(client: Any, settings: Any) -> None:
    settings.LOGIN_RATE = "3/min"
    redis_forget("rate:login:*")
    User.objects.create_user("alice", password="right-password-123")
    wrong = {"username": "alice", "password": "guess"}
    codes = [client.post("/login/", wrong, REMOTE_ADDR="198.51.100.4").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    right = client.post("/login/", {**wrong, "password": "right-password-123"}, REMOTE_ADDR="198.51.100.4")
    assert right.status_code == 429, "even the right password waits: the limit is per address, not per guess"
    assert client.post("/admin/login/", wrong, REMOTE_ADDR="198.51.100.4").status_code == 429
    assert client.post("/login/", wrong, REMOTE_ADDR="198.51.100.5").status_code == 200, "another address"


def settings_as_deployed(**env: str) -> dict[str, Any]:
    """The settings a process started with ``env`` gets (they are read once, at start-up)."""
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k, None) for k in "
        "['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER', "
        "'MESSAGE_STORAGE', 'METRICS_PUBLIC']}))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "HTTPS_ONLY", "TRUSTED_PROXIES", "METRICS_PUBLIC")
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        env={**base, "SECRET_KEY": "x", "DJANGO_SETTINGS_MODULE": "controlplane.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_it_keeps_cookies_to_https_and_sends_hsts_without_debug() -> None:
    deployed = settings_as_deployed(DEBUG="0")
    assert deployed["SESSION_COOKIE_SECURE"] is True
    assert deployed["CSRF_COOKIE_SECURE"] is True
    assert deployed["SECURE_HSTS_SECONDS"] == 31_536_000
    assert deployed["SECURE_PROXY_SSL_HEADER"] is None, (
        "a forwarded proto is believed only from trusted proxies"
    )
    assert deployed["MESSAGE_STORAGE"].endswith("SessionStorage"), "a new API key is never put in a cookie"
    assert deployed["METRICS_PUBLIC"] is False
    behind_proxy = settings_as_deployed(DEBUG="0", TRUSTED_PROXIES="10.0.0.0/8")
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    local = settings_as_deployed(DEBUG="1")
    assert (local["SESSION_COOKIE_SECURE"], local["SECURE_HSTS_SECONDS"]) == (False, 0)
