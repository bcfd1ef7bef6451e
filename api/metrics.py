"""``GET /metrics``: Prometheus text format, computed from Postgres at scrape time.

A custom collector on its own registry runs a handful of aggregate queries per scrape, so every replica reports
the same truth and nothing is kept in a process. The chain head is the only outside call, with a short timeout
(METRICS_CHAIN_TIMEOUT): a down chain shows as ``controlplane_chain_up 0`` and never fails the scrape. A scrape
needs ``Authorization: Bearer <METRICS_TOKEN>``, unless ``METRICS_PUBLIC=1``.

Families, all prefixed ``controlplane_``:
- ledger: ``batches{status}``, ``batches_at_risk``, ``signatures{status}``, ``signatures_conflicting``,
  ``batch_quorum_seconds`` (histogram: first sighting to quorum of verified stake);
- stake and operators: ``stake_online_ratio`` (registered stake not known to be down), ``stake_ratio{state}``,
  ``quorum_threshold_ratio``, ``operators{state}`` (registered operators by liveness);
- ingest: ``chain_up``, ``chain_head_block``, ``ingest_cursor_block`` (the slowest contract cursor),
  ``ingest_head_lag_blocks``, ``ingest_last_advance_timestamp_seconds``;
- work: ``recovery_tasks{kind,state}``, ``alerts_open{kind}``, ``alerts_opened_total{kind}``,
  ``webhook_deliveries{endpoint,name,status}``, ``webhook_deliveries_retrying{endpoint,name}``,
  ``webhook_oldest_pending_seconds{endpoint,name}``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from alerts.models import AlertKind, AlertState, WebhookDelivery, WebhookEndpoint
from controlplane.rowcounts import rowcounts
from intake.models import SignatureStatus
from ledger.models import BatchStatus, IngestCursor, Operator
from liveness.models import OperatorLiveness, OperatorState
from progress.models import QUORUM_BUCKETS, BatchProgress
from progress.quorum import quorum_threshold
from recovery.models import RecoveryKind, RecoveryStatus

logger = logging.getLogger("api.metrics")

PREFIX = "controlplane_"
# Seconds from a batch's first sighting to quorum: a healthy network lands in the first buckets.


def _table(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _sql(query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, list(params))
        return list(cursor.fetchall())


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _single(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _by(rows: Iterable[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], int]:
    return {tuple(str(row[key]) for key in keys): int(row["n"]) for row in rows}


def _counted(prefix: str, parts: int) -> dict[tuple[str, ...], int]:
    """The counts under ``prefix`` whose key has ``parts`` parts, keyed like ``_by``."""
    return {
        tuple(key.split(":")): n for key, n in rowcounts(prefix=prefix).items() if key.count(":") == parts - 1
    }


# --- Ledger ------------------------------------------------------------------------------------


def ledger_metrics() -> Iterator[Metric]:
    """Batches and signatures by status, and the quorum time histogram."""
    # Counts kept by the writes (controlplane.rowcounts): a scrape never scans a table that grows with history.
    batches = _counted("batches", 1)
    family = _gauge("batches", "Batches in the ledger by status.", ["status"])
    for status in BatchStatus.values:
        family.add_metric([status], batches.get((status,), 0))
    yield family
    yield _single(
        "batches_at_risk",
        "Pending batches whose signed plus live unsigned stake is below the threshold.",
        BatchProgress.objects.filter(at_risk=True, batch__status=BatchStatus.PENDING).count(),
    )
    signatures = _counted("signatures", 1)
    family = _gauge("signatures", "Operators' signed responses by status.", ["status"])
    for status in SignatureStatus.values:
        family.add_metric([status], signatures.get((status,), 0))
    yield family
    yield _single(
        "signatures_conflicting",
        "Signatures that conflict with another by the same operator for the same batch.",
        signatures.get(("conflicting",), 0),
    )
    yield quorum_histogram()


def quorum_histogram() -> HistogramMetricFamily:
    """Seconds from each batch's first sighting to quorum, cumulative: counted by the writes of each quorum."""
    counts = rowcounts(prefix="quorum")
    bounds = [f"{bound:g}" for bound in QUORUM_BUCKETS] + ["+Inf"]
    buckets = [counts.get(f"le:{int(bound * 1000)}", 0) for bound in QUORUM_BUCKETS] + [
        counts.get("count", 0)
    ]
    family = HistogramMetricFamily(
        PREFIX + "batch_quorum_seconds", "Seconds from a batch's first sighting to quorum of verified stake."
    )
    family.add_metric(
        [], buckets=list(zip(bounds, buckets, strict=True)), sum_value=counts.get("sum_ms", 0) / 1000
    )
    return family


# --- Stake and operators -----------------------------------------------------------------------


def operator_metrics() -> Iterator[Metric]:
    """Registered operators and their current stake by liveness state (never probed: unknown), one query."""
    rows = _sql(
        f"""
        SELECT coalesce(l.state, %s), count(*), coalesce(sum(o.current_stake), 0)
        FROM {_table(Operator)} o LEFT JOIN {_table(OperatorLiveness)} l ON l.operator_id = o.operator_id
        WHERE o.registered GROUP BY 1
        """,
        [OperatorState.UNKNOWN],
    )
    operators = {str(state): int(n) for state, n, _ in rows}
    stakes = {str(state): Decimal(stake) for state, _, stake in rows}
    total = sum(stakes.values(), Decimal(0))
    family = _gauge("operators", "Registered operators by liveness state.", ["state"])
    for state in OperatorState.values:
        family.add_metric([state], operators.get(state, 0))
    yield family
    family = _gauge(
        "stake_ratio", "Share of the registered stake by its operators' liveness state.", ["state"]
    )
    for state in OperatorState.values:
        family.add_metric([state], float(stakes.get(state, 0) / total) if total else 0.0)
    yield family
    # Never-probed operators count as online, as quorum progress counts them: no alarm before the first probe.
    online = float((total - stakes.get(OperatorState.DOWN, Decimal(0))) / total) if total else 0.0
    yield _single("stake_online_ratio", "Share of the registered stake whose operators are not down.", online)
    yield _single(
        "quorum_threshold_ratio",
        "Share of the stake a batch needs (QUORUM_THRESHOLD_PERCENTAGE / 100).",
        quorum_threshold() / 100,
    )


# --- Ingest ------------------------------------------------------------------------------------


def chain_head() -> int | None:
    """The chain's head block, or None when the node cannot be reached quickly (one attempt, short timeout)."""
    from chain.client import ChainClient

    if not settings.CHAIN_RPC_URL:
        return None
    try:
        url = str(settings.CHAIN_RPC_URL)
        with ChainClient(url, timeout=float(settings.METRICS_CHAIN_TIMEOUT), max_attempts=1) as client:
            return client.block_number()
    except Exception as exc:  # any failure here is "the chain is down" for the scrape, never a failed scrape
        logger.debug("metrics: chain head unavailable (%s)", exc)
        return None


def ingest_metrics() -> Iterator[Metric]:
    cursors = IngestCursor.objects.aggregate(block=Min("block_number"), advanced=Max("updated_at"))
    head = chain_head()
    yield _single(
        "chain_up",
        "1 when the chain node answered this scrape's head request, else 0.",
        int(head is not None),
    )
    if head is not None:
        yield _single("chain_head_block", "The chain's head block number.", head)
    if cursors["block"] is not None:
        yield _single(
            "ingest_cursor_block", "The block the slowest contract cursor has ingested to.", cursors["block"]
        )
        yield _single(
            "ingest_last_advance_timestamp_seconds",
            "Unix time a contract cursor last moved.",
            cursors["advanced"].timestamp(),
        )
        if head is not None:
            yield _single(
                "ingest_head_lag_blocks",
                "Blocks between the chain head and the slowest ingest cursor.",
                max(0, head - int(cursors["block"])),
            )


# --- Recovery, alerts, webhooks ------------------------------------------------------------------


def work_metrics() -> Iterator[Metric]:
    tasks = _counted("recovery_tasks", 2)
    family = _gauge("recovery_tasks", "Recovery tasks by kind and state.", ["kind", "state"])
    for kind in RecoveryKind.values:
        for status in RecoveryStatus.values:
            family.add_metric([kind, status], tasks.get((kind, status), 0))
    yield family

    alerts = _counted("alerts", 2)
    family = _gauge("alerts_open", "Open alerts by kind.", ["kind"])
    opened = CounterMetricFamily(
        PREFIX + "alerts_opened", "Alerts opened since the ledger began, by kind.", labels=["kind"]
    )
    for kind in AlertKind.values:
        family.add_metric([kind], alerts.get((kind, AlertState.OPEN), 0))
        opened.add_metric([kind], sum(n for (k, _), n in alerts.items() if k == kind))
    yield family
    yield opened

    rows = _sql(
        f"""
        SELECT e.id, e.name, count(d.id), count(d.id) FILTER (WHERE d.attempts > 0),
            coalesce(extract(epoch FROM clock_timestamp() - min(d.created_at)), 0)
        FROM {_table(WebhookEndpoint)} e
        LEFT JOIN {_table(WebhookDelivery)} d ON d.endpoint_id = e.id AND d.status = 'pending'
        GROUP BY e.id, e.name ORDER BY e.id
        """
    )
    labels = ["endpoint", "name"]
    deliveries = _gauge(
        "webhook_deliveries", "Webhook deliveries by endpoint and status.", [*labels, "status"]
    )
    retrying = _gauge("webhook_deliveries_retrying", "Pending deliveries that failed at least once.", labels)
    oldest = _gauge("webhook_oldest_pending_seconds", "Age of the oldest undelivered delivery.", labels)
    # Pending ones are few (read through the status index); delivered ones are counted by the writes.
    delivered = rowcounts(prefix="webhook_deliveries")
    for endpoint_id, name, pending, failing, age in rows:
        key = [str(endpoint_id), str(name)]
        deliveries.add_metric([*key, "pending"], pending)
        deliveries.add_metric([*key, "delivered"], delivered.get(f"{endpoint_id}:delivered", 0))
        retrying.add_metric(key, failing)
        oldest.add_metric(key, float(age))
    yield from (deliveries, retrying, oldest)


class ControlPlaneCollector(Collector):
    """Everything is read at scrape time; no describe(), so registering it runs no query."""

    def collect(self) -> Iterator[Metric]:
        yield from ledger_metrics()
        yield from operator_metrics()
        yield from ingest_metrics()
        yield from work_metrics()


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ControlPlaneCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return bool(settings.METRICS_PUBLIC)  # no token: closed, unless made public on purpose
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), str(token).encode())


@require_http_methods(["GET", "HEAD"])
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
