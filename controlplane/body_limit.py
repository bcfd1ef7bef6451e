"""Request bodies over a limit are refused before they are buffered (ASGI middleware, in front of Django).

Django's ASGI handler reads a whole body (spooling big ones to disk) before any view runs, so a view's own size
check comes too late. This middleware refuses a request whose Content-Length is over the limit without reading
it, and counts the bytes of one without (chunked): past the limit it stops passing the body on and answers 413
itself. The intake has its own, small limit (INTAKE_MAX_BODY_BYTES); everything else REQUEST_MAX_BODY_BYTES.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[..., Awaitable[None]]  # an ASGI application (Django's handler types its arguments narrowly)

INTAKE_PATH = "/api/v1/signatures"


def body_limit_for(path: str) -> int:
    if path.rstrip("/") == INTAKE_PATH:
        return int(settings.INTAKE_MAX_BODY_BYTES)
    return int(settings.REQUEST_MAX_BODY_BYTES)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"error": f"body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(str(scope.get("path") or ""))
        declared = None
        for name, value in scope.get("headers") or []:
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None and (declared > limit or declared < 0):
            await _refuse(send, limit)  # nothing of the body was read
            return

        seen = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body") or b"")
                if seen > limit:
                    over = True  # the app sees a client that went away; we answer 413 below
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if over and not started:
            await _refuse(send, limit)
