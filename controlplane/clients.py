"""Who is asking, and how often: the client's address (proxies trusted only when configured) and a shared
rate limit in Redis.

``X-Forwarded-For`` is anyone's to write: it is read only when the direct peer is one of ``TRUSTED_PROXIES``,
and then from the right, skipping trusted hops, so a client cannot name itself someone else.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

from controlplane.outages import redis_outage

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def _trusted(address: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(meta: Mapping[str, object]) -> str:
    """The client's address for a request's META (or ASGI-derived mapping): REMOTE_ADDR, or, behind a trusted
    proxy, the right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = str(meta.get("REMOTE_ADDR") or "")
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(peer, networks):
        return peer
    forwarded = [
        part.strip() for part in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if part.strip()
    ]
    for hop in reversed(forwarded):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: the proxy is who we know
    return peer


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``N/s``, ``N/min``, ``N/h``, ``N/d`` (and their longer spellings)."""
        count, _, unit = text.partition("/")
        seconds = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
        if not count.isdigit() or int(count) < 1 or unit not in seconds:
            raise ValueError(f"a rate looks like 600/min (per s, min, h or d), not {text!r}")
        return cls(count=int(count), seconds=seconds[unit])


_redis: redis.Redis | None = None


def _connection() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)
    return _redis


# GCRA (the generic cell rate algorithm): one key per client holds the time its allowance is spent up to. A
# fixed window let twice the rate through across a window's edge, and made the limit depend on the wall clock's
# second when a burst came. Denied hits do not spend allowance. Atomic in Redis, so replicas share one count.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - period
if allow_at > now then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return false
"""


def rate_check(*, key: str, rate: Rate, fail_open: bool) -> float | None:
    """Count one hit for ``key``; None when allowed, else the seconds until the next hit is (for Retry-After).

    Up to ``rate.count`` hits may come at once, then one every ``rate.seconds / rate.count``. Counted in Redis,
    so every replica shares the counts. With Redis away, ``fail_open`` decides: the intake stays open (its own
    per-batch bounds hold), anything that protects people's accounts closes.
    """
    return rate_check_many(keys=[key], rate=rate, fail_open=fail_open)[0]


def rate_check_many(*, keys: Sequence[str], rate: Rate, fail_open: bool) -> list[float | None]:
    """``rate_check`` for hits that came together, in one round trip to Redis; a key may come more than once."""
    if not keys:
        return []
    try:
        pipeline = _connection().pipeline(transaction=False)
        now, interval = repr(time.time()), repr(rate.seconds / rate.count)
        for key in keys:
            pipeline.eval(_GCRA, 1, f"rate:{key}", now, interval, str(rate.seconds))
        waits = pipeline.execute()
        redis_outage.over()
    except Exception as exc:  # redis-py can fail with more than RedisError under load: a count never 500s
        redis_outage.note(
            f"rate limit for {keys[0].split(':', 1)[0]} not counted ({type(exc).__name__}: {exc})"
        )
        return [None if fail_open else float(rate.seconds) for _ in keys]
    return [None if wait is None else max(1.0, math.ceil(float(wait))) for wait in waits]
