from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The pages, their templates and static files, and the live sockets that keep them current."""

    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # The live dashboard hears every change the stages below it announce (controlplane.changes).
        from dashboard.live.notify import live_receivers_connect

        live_receivers_connect()
