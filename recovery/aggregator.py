"""The aggregator as the control plane sees it: an HTTP JSON peer that acknowledges what it received."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from controlplane.outbound import OutboundError, configured_target, request


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


def aggregator_health() -> AggregatorAnswer:
    return _call("GET", "/health")


def aggregator_post_signature(payload: dict[str, Any]) -> AggregatorAnswer:
    return _call("POST", "/signatures", payload)


def aggregator_announce(*, merkle_root: str, sender: str, task_created_block: int) -> AggregatorAnswer:
    return _call(
        "POST",
        "/tasks",
        {"batchMerkleRoot": merkle_root, "senderAddress": sender, "taskCreatedBlock": task_created_block},
    )
