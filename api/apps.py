from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The token-authenticated REST API and the /metrics scrape."""

    name = "api"
    verbose_name = "API"
