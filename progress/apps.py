from __future__ import annotations

from django.apps import AppConfig


class ProgressConfig(AppConfig):
    """Each batch's stake-weighted signature progress towards the 67% quorum."""

    name = "progress"
    verbose_name = "Quorum progress"
