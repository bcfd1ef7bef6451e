from __future__ import annotations

from django.apps import AppConfig


class DevnetConfig(AppConfig):
    name = "devnet"
    verbose_name = "Reference devnet"
