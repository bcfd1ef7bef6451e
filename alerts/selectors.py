"""Alert selectors: the lists the dashboard, the API and the metrics read."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from alerts.models import Alert, AlertSeverity, AlertState

_SEVERITY_RANK = Case(
    When(severity=AlertSeverity.CRITICAL, then=Value(0)),
    When(severity=AlertSeverity.WARNING, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def alert_list(
    *,
    state: str | None = None,
    kind: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Alert]:
    """Alerts, newest first; each filter applies when given (``since``: opened at or after it)."""
    alerts = Alert.objects.all()
    if state:
        alerts = alerts.filter(state=state)
    if kind:
        alerts = alerts.filter(kind=kind)
    if severity:
        alerts = alerts.filter(severity=severity)
    if since is not None:
        alerts = alerts.filter(opened_at__gte=since)
    return alerts.order_by("-opened_at", "-id")


def alert_get(*, alert_id: int) -> Alert | None:
    return Alert.objects.filter(id=alert_id).first()


def alerts_open() -> QuerySet[Alert]:
    """The open alerts, most severe first (critical, warning, info), then newest."""
    return alert_list(state=AlertState.OPEN).order_by(_SEVERITY_RANK, "-opened_at", "-id")


def alert_open_counts() -> dict[str, int]:
    """How many alerts are open, per kind (kinds with none are left out)."""
    rows = Alert.objects.filter(state=AlertState.OPEN).values("kind").annotate(n=Count("id")).order_by("kind")
    return {row["kind"]: row["n"] for row in rows}
