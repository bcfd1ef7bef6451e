"""Dashboard pages: thin adapters from a request to selectors and a template.

Every page needs a logged-in user unless ``PUBLIC_DASHBOARD``; actions (the recovery buttons) are rendered for
staff only, and the recovery API they call refuses everyone else anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from controlplane.inputs import datetime_utc
from controlplane.paging import CountedPaginator
from dashboard.operator_selectors import (
    OPERATOR_STATES,
    UPTIME_WINDOWS,
    operator_detail,
    operator_filtered,
    operator_rows,
)
from dashboard.overview_selectors import overview_get
from dashboard.recovery_selectors import recovery_open_tasks, recovery_runs, recovery_task_counts
from dashboard.selectors import (
    BATCH_FLAGS,
    batch_detail,
    batch_filtered,
    batch_rows,
    stalled_blocks,
)
from ledger.models import BatchStatus
from ledger.selectors import batch_count_known, bytes32_normalize
from recovery.models import RecoveryKind

BATCHES_PER_PAGE = 50
OPERATORS_PER_PAGE = 50
RUNS_PER_PAGE = 20
# The operator page charts its last 50 signatures and lists the latest of them.
SIGNATURE_ROWS = 20
TIME_RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
}

View = Callable[..., HttpResponse]


def dashboard_page(view: View) -> View:
    """Log in first, unless the dashboard is public (read at request time, so it can be toggled in tests)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.PUBLIC_DASHBOARD and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def can_act(request: HttpRequest) -> bool:
    """Only staff see action buttons (the API is the real gate: it refuses non-staff)."""
    return bool(request.user.is_authenticated and request.user.is_staff)


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], *, live: str | None, kinds: str = ""
) -> HttpResponse:
    """``live``: the socket path the page listens on; ``kinds``: the change kinds (prefixes) that refresh it."""
    context = {**context, "can_act": can_act(request), "live_path": live, "live_kinds": kinds}
    return render(request, f"dashboard/{template}", context)


def _page(request: HttpRequest, items: Any, per_page: int, *, known_count: int | None = None) -> Page:
    return CountedPaginator(items, per_page, known_count=known_count).get_page(request.GET.get("page"))


def _choice(value: str | None, choices: Any) -> str | None:
    return value if value in choices else None


def _moment(value: str | None) -> datetime | None:
    """A ``datetime-local`` or ``YYYY-MM-DD`` value, read as UTC; anything else is no value."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return datetime_utc(parsed)


# --- Pages -------------------------------------------------------------------------------------


@dashboard_page
def overview(request: HttpRequest) -> HttpResponse:
    return _render(
        request,
        "overview.html",
        {"overview": overview_get(), "stalled_blocks": stalled_blocks()},
        live="ws/quorum/",
    )


@dashboard_page
def batch_list(request: HttpRequest) -> HttpResponse:
    status = _choice(request.GET.get("status"), BatchStatus.values)
    flag = _choice(request.GET.get("flag"), BATCH_FLAGS)
    time_range = _choice(request.GET.get("range"), TIME_RANGES)
    since = _moment(request.GET.get("since"))
    until = _moment(request.GET.get("until"))
    if time_range is not None:
        since = timezone.now() - TIME_RANGES[time_range]
    # Every batch, or one status, is counted by the writes; other filters are counted on the page.
    known = (
        None if flag or since or until else batch_count_known(filters={"status": status} if status else {})
    )
    page = _page(
        request,
        batch_filtered(status=status, flag=flag, since=since, until=until),
        BATCHES_PER_PAGE,
        known_count=known,
    )
    filters = {
        "status": status or "",
        "flag": flag or "",
        "range": time_range or "",
        "since": request.GET.get("since", "") if since and not time_range else "",
        "until": request.GET.get("until", "") if until else "",
    }
    return _render(
        request,
        "batch_list.html",
        {
            "page": page,
            "rows": batch_rows(batches=list(page.object_list)),
            "filters": filters,
            "filtered": any(filters.values()),
            "statuses": BatchStatus.choices,
            "time_ranges": list(TIME_RANGES),
            "stalled_blocks": stalled_blocks(),
        },
        live="ws/quorum/",
    )


def _bytes32_or_404(value: str) -> str:
    normalized = bytes32_normalize(value=value)
    if normalized is None:
        raise Http404("not a 0x-prefixed 32-byte hex value")
    return normalized


@dashboard_page
def batch_page(request: HttpRequest, identifier: str) -> HttpResponse:
    detail = batch_detail(identifier=_bytes32_or_404(identifier))
    if detail is None:
        raise Http404("no batch with this identifier")
    return _render(
        request,
        "batch_detail.html",
        {"detail": detail, "batch": detail.batch, "progress": detail.progress, "chart": detail.chart},
        live=f"ws/batches/{detail.batch.identifier}/",
    )


@dashboard_page
def operator_list(request: HttpRequest) -> HttpResponse:
    state = _choice(request.GET.get("state"), OPERATOR_STATES)
    page = _page(request, operator_filtered(state=state), OPERATORS_PER_PAGE)
    return _render(
        request,
        "operator_list.html",
        {
            "page": page,
            "rows": operator_rows(rows=list(page.object_list)),
            "state": state or "",
            "states": OPERATOR_STATES,
        },
        live="ws/quorum/",
        kinds="operator. signature. batch.",
    )


@dashboard_page
def operator_page(request: HttpRequest, operator_id: str) -> HttpResponse:
    window = _choice(request.GET.get("window"), UPTIME_WINDOWS) or "24h"
    detail = operator_detail(operator_id=_bytes32_or_404(operator_id), window=window)
    if detail is None:
        raise Http404("no operator with this operatorId")
    return _render(
        request,
        "operator_detail.html",
        {
            "detail": detail,
            "operator": detail.operator,
            "windows": list(UPTIME_WINDOWS),
            "chart": detail.chart,
            "signature_rows": detail.signatures[:SIGNATURE_ROWS],
        },
        live="ws/quorum/",
        kinds="operator. signature. recovery.",
    )


@dashboard_page
def recovery(request: HttpRequest) -> HttpResponse:
    kind = _choice(request.GET.get("kind"), [RecoveryKind.REPLAY.value, RecoveryKind.CATCHUP.value])
    page = _page(request, recovery_runs(kind=kind), RUNS_PER_PAGE)
    return _render(
        request,
        "recovery.html",
        {
            "page": page,
            "kind": kind or "",
            "counts": recovery_task_counts(),
            "open_tasks": recovery_open_tasks(),
        },
        live="ws/quorum/",
        kinds="recovery.",
    )
