"""Kept for its migrations only (see apps.py): the stage apps took its models without moving a table."""
