from __future__ import annotations

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    """What the chain said, in Postgres: blocks, events, cursors, batches, operators and stakes (ingest)."""

    name = "ledger"
    verbose_name = "Ledger"
