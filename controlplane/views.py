"""Project-level views: the health check, and JSON error pages for the API's URLs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_safe

from controlplane.clients import Rate, client_address, rate_check

logger = logging.getLogger("controlplane")

API_PREFIX = "/api/"


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when Postgres answers (the truth every request needs), else 503. No auth: for load balancers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health check: database unavailable: %s", exc)
        return JsonResponse({"status": "unavailable", "error": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """An unknown URL under /api/ answers the API's error shape; elsewhere Django's page."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": "no such endpoint"}, status=404)
    return defaults.page_not_found(request, exception if exception is not None else Http404())


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": "internal server error"}, status=500)
    return defaults.server_error(request)


def login_rate_limited(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """At most LOGIN_RATE login attempts (POSTs) per client address, counted in Redis across replicas; with
    Redis away, refused (a guessing attack must not get through because the counter is down)."""

    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST":
            address = client_address(request.META)
            wait = rate_check(key=f"login:{address}", rate=Rate.parse(settings.LOGIN_RATE), fail_open=False)
            if wait is not None:
                response = HttpResponse(
                    "Too many login attempts from your address; try again later.\n",
                    status=429,
                    content_type="text/plain",
                )
                response["Retry-After"] = str(int(wait))
                return response
        return view(request, *args, **kwargs)

    return limited
