"""Counts the tests keep in Redis (rates, throttles) outlast a test database: forget them between tests."""

from __future__ import annotations

import redis
from django.conf import settings


def redis_forget(pattern: str) -> None:
    """Delete every key of the test Redis matching ``pattern``."""
    connection = redis.Redis.from_url(settings.REDIS_URL)
    for key in connection.scan_iter(pattern):
        connection.delete(key)
