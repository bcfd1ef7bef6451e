"""The REST API (``/api/v1/``): JSON over the ledger, alerts and recovery, built on selectors and services."""
