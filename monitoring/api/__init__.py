"""The read API (``/api/v1/``): JSON over the ledger, built on selectors."""
