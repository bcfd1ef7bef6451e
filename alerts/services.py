"""Alert services: evaluate the rules, open and resolve alerts exactly once each, acknowledge them.

Edge-triggered: an alert row opens when its condition starts to hold and resolves when it stops; while nothing
changes an evaluation writes and sends nothing. Each open and each resolution requests its webhook deliveries
and its live update in the same transaction, so none is sent for a change that did not commit, and none is lost
for one that did. Exactly once even between concurrent evaluators: an opening is an INSERT guarded by the
partial unique index (one open alert per kind and subject), a resolution a conditional UPDATE of an open row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from alerts.conditions import Condition
from alerts.models import Alert, AlertState, AlertWatch, WebhookEvent
from alerts.observe import RuleContext
from alerts.rules import RULES, RULES_BY_KIND
from alerts.webhooks import webhook_deliveries_request
from controlplane.changes import alert_changed, change_announce

logger = logging.getLogger("alerts")

_OPEN = """
INSERT INTO {table} (kind, subject, severity, state, summary, details, opened_at, resolution, acknowledged_by)
VALUES (%s, %s, %s, 'open', %s, %s::jsonb, %s, '', '')
ON CONFLICT (kind, subject) WHERE state = 'open' DO NOTHING
RETURNING id
"""


@dataclass(frozen=True)
class EvaluationResult:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    # Open alerts whose condition still holds (nothing sent for them).
    unchanged: int = 0
    # Kinds whose rule could not tell this time (a node not answering, a rule that failed): left as they were.
    unknown: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _live(alert: Alert, *, kind: str) -> None:
    change_announce(alert_changed, alert=alert, kind=kind)


def alert_open(*, condition: Condition, now: datetime | None = None) -> Alert | None:
    """Open the alert for ``condition``; None when one is already open for its (kind, subject)."""
    now = now or timezone.now()
    table = connection.ops.quote_name(Alert._meta.db_table)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _OPEN.format(table=table),
                [
                    str(condition.kind),
                    condition.subject,
                    str(condition.severity),
                    condition.summary,
                    json.dumps(condition.details, cls=DjangoJSONEncoder),
                    now,
                ],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        alert = Alert.objects.get(id=row[0])
        webhook_deliveries_request(alert=alert, event=WebhookEvent.FIRING)
        _live(alert, kind="alert.opened")
    return alert


def alert_resolve(*, alert: Alert, resolution: str, now: datetime | None = None) -> Alert | None:
    """Resolve ``alert`` if it is still open; None when it was not (someone else resolved it first)."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = Alert.objects.filter(id=alert.id, state=AlertState.OPEN).update(
            state=AlertState.RESOLVED, resolved_at=now, resolution=resolution
        )
        if not updated:
            return None
        alert.refresh_from_db()
        webhook_deliveries_request(alert=alert, event=WebhookEvent.RESOLVED)
        _live(alert, kind="alert.resolved")
    return alert


def alert_acknowledge(*, alert: Alert, user: str) -> Alert:
    """Record that ``user`` has seen the alert. Idempotent: the first acknowledgement is kept."""
    Alert.objects.filter(id=alert.id, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user[:150]
    )
    alert.refresh_from_db()
    return alert


def alerts_evaluate(*, now: datetime | None = None, kinds: Collection[str] | None = None) -> EvaluationResult:
    """Run the rules (all, or those of ``kinds``); open what started to hold, resolve what stopped.

    A rule that fails or cannot tell leaves its kind's alerts as they are: an alert resolves only when its
    rule positively no longer finds the condition.
    """
    started = time.monotonic()
    ctx = RuleContext(now=now or timezone.now())
    current: dict[tuple[str, str], Condition] = {}
    evaluated: set[str] = set()
    unknown: list[str] = []
    for rule in RULES:
        if kinds is not None and rule.kind not in kinds:
            continue
        try:
            with transaction.atomic():  # a failing query must not poison a caller's transaction
                found = rule.conditions(ctx)
        except (OperationalError, InterfaceError):
            raise  # Postgres is away: the whole pass waits for it (the loop says so once)
        except Exception:
            logger.exception("alert rule %s failed; its alerts stay as they are", rule.kind)
            found = None
        if found is None:
            unknown.append(str(rule.kind))
            continue
        evaluated.add(str(rule.kind))
        for condition in found:
            current.setdefault(condition.key, condition)

    # Read after the rules ran, so an alert another evaluator just opened is seen and not opened again.
    open_alerts = {
        (a.kind, a.subject): a for a in Alert.objects.filter(state=AlertState.OPEN, kind__in=evaluated)
    }
    opened = []
    for key, condition in current.items():
        if key not in open_alerts and (alert := alert_open(condition=condition, now=ctx.now)) is not None:
            opened.append(alert)
    resolved = []
    for key, alert in open_alerts.items():
        if key in current:
            continue
        try:
            with transaction.atomic():
                resolution = RULES_BY_KIND[alert.kind].resolution(alert, ctx)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("explaining the resolution of alert %s failed", alert.id)
            resolution = "the condition no longer holds"
        if (done := alert_resolve(alert=alert, resolution=resolution, now=ctx.now)) is not None:
            resolved.append(done)
    return EvaluationResult(
        opened=opened,
        resolved=resolved,
        unchanged=sum(1 for key in open_alerts if key in current),
        unknown=unknown,
        seconds=time.monotonic() - started,
    )


def alerts_forget_chain(*, reason: str = "", **_: object) -> None:
    """The chain was replaced (``ledger.chain_replaced``): its open alerts resolve (receivers hear so), and what
    the evaluator watched of it is forgotten."""
    resolution = f"the ledger was reset: {reason}" if reason else "the ledger was reset"
    for alert in Alert.objects.filter(state=AlertState.OPEN):
        alert_resolve(alert=alert, resolution=resolution)
    AlertWatch.objects.all().delete()
