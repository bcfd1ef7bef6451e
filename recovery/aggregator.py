"""The aggregator as the control plane sees it: an HTTP JSON peer that acknowledges what it received."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from devnet.state import DevnetStateError, load_state


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
    if settings.AGGREGATOR_URL:
        return str(settings.AGGREGATOR_URL).rstrip("/")
    try:
        return str(load_state()["aggregator"]["url"]).rstrip("/")
    except (DevnetStateError, KeyError) as exc:
        raise AggregatorUnavailable(
            f"AGGREGATOR_URL is not set and there is no devnet aggregator ({exc})"
        ) from exc


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> AggregatorAnswer:
    url = aggregator_url() + path
    try:
        response = requests.request(method, url, json=body, timeout=float(settings.AGGREGATOR_TIMEOUT))
    except requests.RequestException as exc:
        raise AggregatorUnavailable(f"{method} {url}: {type(exc).__name__}") from None
    if response.status_code >= 500:
        raise AggregatorUnavailable(f"{method} {url}: HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError:
        raise AggregatorUnavailable(f"{method} {url}: HTTP {response.status_code}, not JSON") from None
    return AggregatorAnswer(
        status_code=response.status_code, body=payload if isinstance(payload, dict) else {}
    )


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
