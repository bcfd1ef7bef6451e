"""Operator liveness: probes of each operator's EigenLayer node API, signs of life, and their state changes.

``probe`` speaks HTTP (no database), ``services`` record what was seen, ``selectors`` read downtime windows,
missed batches and who is live, ``jobs`` holds the RQ-shaped entry point.
"""
