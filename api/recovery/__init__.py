"""The recovery REST API: staff start replays and catch-ups and follow their runs."""
