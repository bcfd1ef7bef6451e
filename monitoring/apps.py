from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Only the migrations that created the tables, before the models moved to their stage apps.

    Its tables (``monitoring_*``) now belong to ledger, intake, liveness, progress and alerts, which name them
    in ``Meta.db_table``; migration 0006 hands their state over without touching the database.
    """

    name = "monitoring"
    verbose_name = "Migrations from before the stage apps"
