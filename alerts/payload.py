"""The JSON body of a webhook: exactly what Prometheus Alertmanager POSTs to its webhook receivers (version 4).

So any Alertmanager bridge (Slack, PagerDuty, Opsgenie, ...) can receive it unchanged. One alert per body:

    {"version": "4", "groupKey": "{}:{alertname=\"operator_down\", subject=\"0x…\"}", "truncatedAlerts": 0,
     "status": "firing", "receiver": "<endpoint name>", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "<PUBLIC_URL>",
     "alerts": [{"status": "firing", "labels": {"alertname": "operator_down", "severity": "critical",
                 "subject": "0x…", "operator": "0x…"}, "annotations": {"summary": "…", "description": "…"},
                 "startsAt": "2024-05-01T12:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "<PUBLIC_URL>/operators/0x…/", "fingerprint": "<16 hex>"}]}

As in Alertmanager, labels with an empty value are left out, ``endsAt`` is Go's zero time while firing, and the
fingerprint is prometheus/common's ``LabelSet.Fingerprint()`` (FNV-1a 64 over the sorted labels), so a firing
and its resolution carry the same fingerprint and groupKey.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from alerts.models import Alert, AlertKind, WebhookEvent

VERSION = "4"
# Go's zero time.Time as Alertmanager marshals it: "not ended yet".
ZERO_TIME = "0001-01-01T00:00:00Z"

# Which dashboard page an alert's subject links to.
BATCH_KINDS = frozenset({AlertKind.BATCH_AT_RISK, AlertKind.BATCH_STALLED})
# Kinds whose subject is an operatorId (an invalid signature's subject is the source address that posted it).
OPERATOR_KINDS = frozenset({AlertKind.OPERATOR_DOWN, AlertKind.CONFLICTING_SIGNATURE})
BATCH_PAGE = "/batches/{}/"
OPERATOR_PAGE = "/operators/{}/"

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = b"\xff"


def rfc3339(moment: datetime) -> str:
    """UTC, fractional seconds without trailing zeros, as Go's RFC3339Nano writes them."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def labels_fingerprint(*, labels: dict[str, str]) -> str:
    """prometheus/common ``labelSetToFingerprint``: FNV-1a 64 of name, 0xff, value, 0xff over sorted names."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for byte in name.encode() + _SEPARATOR + labels[name].encode() + _SEPARATOR:
            value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def _label_set(labels: dict[str, str]) -> str:
    """A LabelSet as Go prints it: {a="x", b="y"}, sorted by name."""
    return "{" + ", ".join(f"{name}={json.dumps(labels[name])}" for name in sorted(labels)) + "}"


def _detail(alert: Alert, *keys: str) -> str:
    for key in keys:
        value = alert.details.get(key) if isinstance(alert.details, dict) else None
        if isinstance(value, str) and value:
            return value
    return ""


def alert_labels(*, alert: Alert) -> dict[str, str]:
    """alertname (the kind), severity, subject, and the batch or operator it concerns when there is one."""
    labels = {"alertname": alert.kind, "severity": alert.severity, "subject": alert.subject}
    batch = _detail(alert, "batch_identifier")
    operator = _detail(alert, "operator_id")
    if alert.kind in BATCH_KINDS:
        batch = alert.subject
    elif alert.kind in OPERATOR_KINDS:
        operator = alert.subject
    elif alert.kind == AlertKind.RECOVERY_FAILING:
        # A failing replay is about a batch, a failing catch-up about an operator.
        task_kind, task_subject = _detail(alert, "task_kind"), _detail(alert, "task_subject")
        batch = task_subject if task_kind == "replay" else batch
        operator = task_subject if task_kind == "catchup" else operator
    labels.update(batch=batch, operator=operator)
    # Alertmanager treats an empty label as an absent one.
    return {name: value for name, value in labels.items() if value}


def alert_generator_url(*, alert: Alert) -> str:
    """The dashboard page of what the alert is about (the overview for network-wide alerts)."""
    base = str(settings.PUBLIC_URL).rstrip("/")
    labels = alert_labels(alert=alert)
    if "batch" in labels:
        return base + BATCH_PAGE.format(labels["batch"])
    if "operator" in labels:
        return base + OPERATOR_PAGE.format(labels["operator"])
    return base + "/"


def alert_annotations(*, alert: Alert) -> dict[str, str]:
    facts = ", ".join(
        f"{key}={value}" for key, value in sorted((alert.details or {}).items()) if value not in (None, "")
    )
    description = f"{alert.summary} ({facts})" if facts else alert.summary
    if alert.resolution:
        description += f". Resolved: {alert.resolution}"
    return {"summary": alert.summary, "description": description, "alert_id": str(alert.id)}


def webhook_payload(*, alert: Alert, event: str, receiver: str) -> dict[str, Any]:
    """The Alertmanager webhook message for one event (firing or resolved) of one alert."""
    if event not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event!r}")
    labels = alert_labels(alert=alert)
    annotations = alert_annotations(alert=alert)
    group_labels = {name: labels[name] for name in ("alertname", "subject") if name in labels}
    ends_at = ZERO_TIME
    if event == WebhookEvent.RESOLVED:
        ends_at = rfc3339(alert.resolved_at or alert.opened_at)
    return {
        "version": VERSION,
        "groupKey": "{}:" + _label_set(group_labels),
        "truncatedAlerts": 0,
        "status": str(event),
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": str(settings.PUBLIC_URL).rstrip("/"),
        "alerts": [
            {
                "status": str(event),
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(alert.opened_at),
                "endsAt": ends_at,
                "generatorURL": alert_generator_url(alert=alert),
                "fingerprint": labels_fingerprint(labels=labels),
            }
        ],
    }
