"""The control plane's catch-up requests: who may ask, what a request holds, and what this node does with it."""

from __future__ import annotations

import hmac
import json
import logging

from devnet.operator.checker import Checker
from devnet.operator.common import (
    _ADDRESS,
    _ROOT,
    CONTROL_MAX_BATCHES,
    MAX_POINTER_LENGTH,
    BatchTask,
    _is_http_url,
)
from intake.parse import IntakeError

logger = logging.getLogger("devnet.operator")


class Control(Checker):
    """The control plane's catch-up requests: who may ask, what a request holds, and what this node does with it."""

    def control_authorized(self, header: str | None) -> bool:
        if self._control_token is None or not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._control_token)

    def control_verify(self, tasks: list[BatchTask]) -> tuple[int, int, list[dict[str, str]]]:
        """Queue the requested batches; (accepted, skipped because signed or in progress here, refused).

        A batch this node already refused on purpose (a bad proof) is not checked again: its refusal is the
        answer, so the control plane records it rather than asking forever.
        """
        refused: list[dict[str, str]] = []
        accepted = 0
        for task in tasks:
            with self._lock:
                reason = self._refused.get(task.key)
            if reason is not None:
                refused.append({"batchMerkleRoot": task.root, "senderAddress": task.sender, "reason": reason})
            elif self.submit(task):
                accepted += 1
        skipped = len(tasks) - accepted - len(refused)
        with self._lock:
            self._counters.control_requests += 1
            self._counters.control_batches_skipped += skipped
        logger.info(
            "%s: control request to verify %d batches: %d accepted, %d skipped (signed or in progress), "
            "%d refused before",
            self.name,
            len(tasks),
            accepted,
            skipped,
            len(refused),
        )
        return accepted, skipped, refused


class ControlRequestError(IntakeError):
    """A refused control request: the same ``{"error", "field"}`` answer as the intake's."""


def parse_control_request(body: bytes) -> list[BatchTask]:
    """The batches of a ``POST /control/verify`` body; ControlRequestError names what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlRequestError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ControlRequestError("body must be a JSON object")
    batches = document.get("batches")
    if not isinstance(batches, list):
        raise ControlRequestError('"batches" must be a list', field="batches")
    if len(batches) > CONTROL_MAX_BATCHES:
        raise ControlRequestError(
            f"at most {CONTROL_MAX_BATCHES} batches per request (got {len(batches)})", field="batches"
        )
    tasks: list[BatchTask] = []
    for i, item in enumerate(batches):
        where = f"batches[{i}]"
        if not isinstance(item, dict):
            raise ControlRequestError(f"{where} must be an object", field=where)
        root = item.get("batchMerkleRoot")
        if not isinstance(root, str) or not _ROOT.match(root):
            raise ControlRequestError(
                f"{where}.batchMerkleRoot must be 0x and 64 hex digits", field=f"{where}.batchMerkleRoot"
            )
        sender = item.get("senderAddress")
        if not isinstance(sender, str) or not _ADDRESS.match(sender):
            raise ControlRequestError(
                f"{where}.senderAddress must be 0x and 40 hex digits", field=f"{where}.senderAddress"
            )
        pointer = item.get("batchDataPointer")
        if not isinstance(pointer, str) or not _is_http_url(pointer):
            raise ControlRequestError(
                f"{where}.batchDataPointer must be an http(s) URL of at most {MAX_POINTER_LENGTH} characters",
                field=f"{where}.batchDataPointer",
            )
        tasks.append(BatchTask(root=root.lower(), sender=sender.lower(), pointer=pointer, source="control"))
    return tasks
