"""POST /api/v1/signatures served at the ASGI layer, in front of Django (every other request passes through).

Through Django, a signature cost about three times its storage: each of the seven middlewares hops between the
event loop and a thread for its request and response halves, and every request starts a thread of its own. The
intake needs none of them (no session, no CSRF, no templates), and it is the one endpoint that takes thousands of
posts a second. Here a post goes to the process's committers (``intake.groups``), which store what arrived
together in one transaction, and gets the same answer (``signature_answer_for``) as the Django view, which the test
client and the API schema still use.

``BodyLimitMiddleware`` sits in front: a body over INTAKE_MAX_BODY_BYTES arrives here as a disconnect, and it
answers 413 itself.
"""

from __future__ import annotations

import asyncio
import json

from controlplane.body_limit import INTAKE_PATH, App, Receive, Scope, Send
from intake.groups import signature_groups
from intake.views import signature_answer_for, signature_post


def _meta(scope: Scope, raw: bytes) -> dict[str, str]:
    """What ``signature_answer`` reads of a request: the peer, the forwarded-for chain and the length."""
    client = scope.get("client") or ("", 0)
    meta = {"REMOTE_ADDR": str(client[0] or ""), "CONTENT_LENGTH": str(len(raw))}
    forwarded = [
        value.decode("latin-1") for name, value in scope.get("headers") or [] if name == b"x-forwarded-for"
    ]
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = ",".join(forwarded)
    return meta


class IntakeEndpoint:
    """ASGI middleware: answers POST INTAKE_PATH (with or without the trailing slash) itself."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or str(scope.get("path") or "").rstrip("/") != INTAKE_PATH
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return  # the client left (or the body went over its limit: BodyLimitMiddleware answers 413)
            chunks.append(message.get("body") or b"")
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        source, parse = signature_post(meta=_meta(scope, raw), raw=raw)
        answer = signature_answer_for(
            await asyncio.wrap_future(signature_groups().submit(source=source, parse=parse))
        )
        body = json.dumps(answer.body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # What Django's SecurityMiddleware would add to this JSON; the page-only headers do not apply.
            (b"x-content-type-options", b"nosniff"),
            *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
