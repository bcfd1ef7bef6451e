"""Query filters of the list endpoints (django-filter FilterSets). A malformed value is a 400 naming it.

Booleans are strict (``true``/``false``/``1``/``0``): django-filter's default would silently ignore ``maybe``.
Block numbers are bounded to Postgres' bigint; times are ISO 8601 (UTC when no offset is given).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState
from alerts.selectors import alert_list
from controlplane.inputs import datetime_utc
from ledger.models import Batch, BatchStatus, Operator
from liveness.models import OperatorLiveness, OperatorState
from recovery.models import RecoveryKind, RecoveryRun

BIGINT_MAX = 2**63 - 1


class StrictBooleanField(forms.Field):
    TRUE = frozenset({"true", "1"})
    FALSE = frozenset({"false", "0"})

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        lowered = str(value).strip().lower()
        if lowered in self.TRUE:
            return True
        if lowered in self.FALSE:
            return False
        raise forms.ValidationError("must be true or false")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


def _boolean(help_text: str, **kwargs: Any) -> StrictBooleanFilter:
    filter_ = StrictBooleanFilter(label=help_text, **kwargs)
    return extend_schema_field({"type": "boolean", "description": help_text})(filter_)


class UtcDateTimeField(forms.DateTimeField):
    """ISO 8601, converted to UTC: Postgres refuses offsets beyond ±15:59 that Python accepts."""

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        try:
            parsed = parse_datetime(str(value).strip())
            if parsed is None:
                raise ValueError(value)
        except ValueError as exc:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc
        return datetime_utc(parsed)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class BlockNumberFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


def _block(lookup: str, help_text: str) -> BlockNumberFilter:
    filter_ = BlockNumberFilter(field_name="created_block", lookup_expr=lookup, label=help_text)
    schema = {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX, "description": help_text}
    return extend_schema_field(schema)(filter_)


class BatchFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=BatchStatus.choices, label="Only batches in this status.")
    at_risk = _boolean(
        "true: only batches whose quorum is at risk; false: every other batch.", method="filter_at_risk"
    )
    created_after = UtcDateTimeFilter(
        field_name="first_seen_at", lookup_expr="gte", label="First seen at or after this time (ISO 8601)."
    )
    created_before = UtcDateTimeFilter(
        field_name="first_seen_at", lookup_expr="lt", label="First seen before this time (ISO 8601)."
    )
    created_block_min = _block("gte", "Created in this block or a later one.")
    created_block_max = _block("lte", "Created in this block or an earlier one.")

    class Meta:
        model = Batch
        fields: list[str] = []

    def filter_at_risk(self, queryset: QuerySet[Batch], name: str, value: bool | None) -> QuerySet[Batch]:
        if value is None:
            return queryset
        at_risk = Q(progress__at_risk=True)
        return queryset.filter(at_risk) if value else queryset.exclude(at_risk)


class OperatorFilter(django_filters.FilterSet):
    registered = _boolean("Only operators registered (true) or not (false).")
    state = django_filters.ChoiceFilter(
        choices=OperatorState.choices,
        method="filter_state",
        label="Only operators in this liveness state (unknown: never probed).",
    )

    class Meta:
        model = Operator
        fields: list[str] = []

    def filter_state(self, queryset: QuerySet[Operator], name: str, value: str) -> QuerySet[Operator]:
        if not value:
            return queryset
        in_state = Exists(OperatorLiveness.objects.filter(operator_id=OuterRef("operator_id"), state=value))
        if value == OperatorState.UNKNOWN:
            # An operator with no liveness row has never been probed: unknown too.
            probed = Exists(OperatorLiveness.objects.filter(operator_id=OuterRef("operator_id")))
            return queryset.filter(in_state | ~probed)
        return queryset.filter(in_state)


class RecoveryRunFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=RecoveryKind.choices, label="Only runs of this kind.")
    dry_run = _boolean("Only dry runs (true) or real runs (false).")

    class Meta:
        model = RecoveryRun
        fields: list[str] = []


class AlertFilter(django_filters.FilterSet):
    """Validates the parameters; ``alert_list`` (the selector) owns what each one means."""

    state = django_filters.ChoiceFilter(
        choices=AlertState.choices, label="Only open or only resolved alerts."
    )
    kind = django_filters.ChoiceFilter(choices=AlertKind.choices, label="Only alerts of this kind.")
    severity = django_filters.ChoiceFilter(
        choices=AlertSeverity.choices, label="Only alerts of this severity."
    )
    since = UtcDateTimeFilter(label="Only alerts opened at or after this time (ISO 8601).")

    class Meta:
        model = Alert
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        data = self.form.cleaned_data
        return alert_list(
            state=data.get("state") or None,
            kind=data.get("kind") or None,
            severity=data.get("severity") or None,
            since=data.get("since"),
        )
