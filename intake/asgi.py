"""POST /api/v1/signatures served at the ASGI layer, in front of Django (every other request passes through).

Through Django, a signature cost about three times its storage: each of the seven middlewares hops between the
event loop and a thread for its request and response halves, and every request starts a thread of its own. The
intake needs none of them (no session, no CSRF, no templates), and it is the one endpoint that takes thousands of
posts a second. Here a post costs one hop, to a fixed pool of threads, and gets the same answer
(``signature_answer``) as the Django view, which the test client and the API schema still use.

``BodyLimitMiddleware`` sits in front: a body over INTAKE_MAX_BODY_BYTES arrives here as a disconnect, and it
answers 413 itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection

from controlplane.body_limit import INTAKE_PATH, App, Receive, Scope, Send
from intake.views import IntakeAnswer, signature_answer

logger = logging.getLogger("intake")


def _answer_in_thread(meta: dict[str, str], raw: bytes) -> IntakeAnswer:
    try:
        return signature_answer(meta=meta, raw=raw)
    except Exception:
        logger.exception("intake: unexpected error answering a post from %s", meta.get("REMOTE_ADDR"))
        return IntakeAnswer(status=500, body={"error": "internal error"})
    finally:
        # Back to the pool after every post, as the net/rpc intake does: the threads outnumber no one's connections.
        connection.close()


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
        # As many threads as database connections: a post holds one connection for its whole store.
        threads = int(settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"])
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="intake")

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
        answer = await asyncio.get_running_loop().run_in_executor(
            self.executor, _answer_in_thread, _meta(scope, raw), raw
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
