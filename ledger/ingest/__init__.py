"""Ingest: chain events into the ledger, gap-free and reorg-safe (cursors per contract, idempotent rows)."""
