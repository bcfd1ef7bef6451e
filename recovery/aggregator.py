"""The aggregator as the control plane sees it, over either protocol.

``http``: the devnet's aggregator, a JSON peer with a boot id that acknowledges what it received and can be told
of a task (``POST /tasks``).

``gob``: Aligned's aggregator, Go net/rpc. It has no boot id and learns tasks only from the chain, so what can be
observed is all there is: a reply of 0 means delivered, a reply of 1 means not (it dropped the signature, for a
task it does not know). Each process keeps one connection per thread and dials again after a failure. The boot
id is the control plane's own: a new one each time the connection that watches the aggregator
(``ServerRunning``) had to be dialled again, since a reset connection or a failed ping means it may have
restarted, and then every pending batch is replayed.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from controlplane.netrpc import Client, ProtocolError, RpcError
from controlplane.outbound import OutboundError, configured_target, request
from intake.parse import signed_response_from_document
from intake.wire import EMPTY, METHOD, PING, SIGNED_TASK_RESPONSE, signed_response_to_gob

logger = logging.getLogger("recovery")


# What an aggregator answers for a task it does not know (the devnet's 404s; Aligned's reply 1 over gob); a replay
# that got one records it in its result under UNKNOWN_TASK.
UNKNOWN_TASK_CODES = frozenset({"unknown_task", "task_expired", "dropped"})
UNKNOWN_TASK = "aggregator_unknown_task"


class AggregatorUnavailable(RuntimeError):
    """No answer, or a 5xx: try again later."""


@dataclass(frozen=True)
class AggregatorAnswer:
    status_code: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code") or self.body.get("status") or "")

    @property
    def boot_id(self) -> str:
        return str(self.body.get("bootId") or "")


def aggregator_url() -> str:
    if not settings.AGGREGATOR_URL:
        note = settings.NETWORK.file_note or "nor in the network file"
        raise AggregatorUnavailable(f"AGGREGATOR_URL is not set ({note})")
    return str(settings.AGGREGATOR_URL).rstrip("/")


# The aggregator answers with small JSON; anything bigger is refused unread.
ANSWER_MAX_BYTES = 256 * 1024


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> AggregatorAnswer:
    url = aggregator_url() + path
    try:
        response = request(
            method,
            configured_target(aggregator_url()),
            path,
            body=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            timeout=float(settings.AGGREGATOR_TIMEOUT),
            max_bytes=ANSWER_MAX_BYTES,
        )
    except OutboundError as exc:
        raise AggregatorUnavailable(f"{method} {url}: {exc.reason}") from None
    if response.status >= 500:
        raise AggregatorUnavailable(f"{method} {url}: HTTP {response.status}")
    try:
        payload = json.loads(response.body)
    except ValueError:
        raise AggregatorUnavailable(f"{method} {url}: HTTP {response.status}, not JSON") from None
    return AggregatorAnswer(status_code=response.status, body=payload if isinstance(payload, dict) else {})


def _gob() -> bool:
    return str(settings.AGGREGATOR_PROTOCOL) == "gob"


def aggregator_health() -> AggregatorAnswer:
    if _gob():
        return _gob_health()
    return _call("GET", "/health")


def aggregator_post_signature(payload: dict[str, Any], *, boot_id: str = "") -> AggregatorAnswer:
    """Deliver one signed response. Over gob, ``boot_id`` (the watched boot) is what an answer is recorded
    against: the aggregator has none of its own."""
    if _gob():
        return _gob_post(payload, boot_id=boot_id)
    return _call("POST", "/signatures", payload)


def aggregator_announce(
    *, merkle_root: str, sender: str, task_created_block: int, boot_id: str = ""
) -> AggregatorAnswer:
    if _gob():
        # Aligned's aggregator can't be told of a task (it follows the chain itself): send, and see.
        return AggregatorAnswer(status_code=200, body={"status": "exists", "bootId": boot_id})
    return _call(
        "POST",
        "/tasks",
        {"batchMerkleRoot": merkle_root, "senderAddress": sender, "taskCreatedBlock": task_created_block},
    )


# --- gob (Go net/rpc) -------------------------------------------------------------------------------


class _Connections(threading.local):
    client: Client | None = None
    address: str = ""
    boot_id: str = ""


_connections = _Connections()


def _gob_client(*, timeout: float) -> tuple[Client, bool]:
    """This thread's connection, dialled when there is none; (client, newly dialled)."""
    address = aggregator_url()
    if _connections.client is not None and _connections.address == address:
        return _connections.client, False
    aggregator_disconnect()
    host, _, port = address.rpartition(":")
    try:
        client = Client(host.strip("[]"), int(port), timeout=timeout)
    except (OSError, ProtocolError) as exc:
        raise AggregatorUnavailable(f"net/rpc {address}: {exc}") from None
    _connections.client, _connections.address = client, address
    return client, True


def aggregator_disconnect() -> None:
    """Close this thread's net/rpc connection, if any (the next call dials again)."""
    if _connections.client is not None:
        _connections.client.close()
    _connections.client = None


def _gob_call(method: str, argument_type: Any, argument: Any, *, timeout: float) -> tuple[Any, bool]:
    """``method(argument)``'s reply on this thread's connection; (reply, newly dialled). A failed connection
    is dropped (the next call dials again) and raised as AggregatorUnavailable."""
    client, dialled = _gob_client(timeout=timeout)
    try:
        return client.call(method, argument_type, argument), dialled
    except RpcError:
        raise
    except (OSError, ProtocolError) as exc:
        aggregator_disconnect()
        raise AggregatorUnavailable(f"net/rpc {aggregator_url()} {method}: {exc}") from None


def _gob_health() -> AggregatorAnswer:
    try:
        reply, dialled = _gob_call(PING, EMPTY, {}, timeout=float(settings.AGGREGATOR_TIMEOUT))
    except RpcError as exc:
        raise AggregatorUnavailable(f"net/rpc {aggregator_url()} {PING}: {exc}") from None
    if dialled or not _connections.boot_id:
        # A connection dialled afresh: the aggregator may be a new process, holding nothing of before.
        _connections.boot_id = f"gob-{uuid.uuid4().hex}"
    return AggregatorAnswer(
        status_code=200, body={"status": f"running ({reply})", "bootId": _connections.boot_id}
    )


def _gob_post(payload: dict[str, Any], *, boot_id: str) -> AggregatorAnswer:
    response = signed_response_from_document(payload)
    try:
        reply, _ = _gob_call(
            METHOD,
            SIGNED_TASK_RESPONSE,
            signed_response_to_gob(response),
            timeout=float(settings.AGGREGATOR_CALL_TIMEOUT),
        )
    except RpcError as exc:  # it refused this signature, saying why
        return AggregatorAnswer(
            status_code=400, body={"status": "refused", "error": str(exc), "bootId": boot_id}
        )
    if reply == 0:
        return AggregatorAnswer(status_code=200, body={"status": "accepted", "bootId": boot_id})
    # 1: not delivered (a task it does not know, or a signature it could not process in time); it kept nothing.
    return AggregatorAnswer(status_code=200, body={"status": "dropped", "reply": reply, "bootId": boot_id})
