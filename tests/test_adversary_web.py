"""The web side under hostile requests: bodies too big are refused before they are buffered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.asgi import application


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
