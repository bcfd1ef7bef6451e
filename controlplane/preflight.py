"""Say in one clear line when Postgres or Redis cannot be reached, and create the database if missing.

Run as ``python -m controlplane.preflight`` (``make run`` and ``make test`` do). Exits 1 with one line per
problem and what to do, instead of a traceback deep inside Django.
"""

from __future__ import annotations

import sys

import dj_database_url
import psycopg
import redis
from psycopg import sql

from controlplane.env import ImproperlyConfiguredEnv, env_str

PG_HINT = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_HINT = (
    'start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)


def check_postgres(url: str) -> str | None:
    config = dj_database_url.parse(url)
    name = config["NAME"]
    host = str(config.get("HOST") or "127.0.0.1")
    port = int(config.get("PORT") or 5432)
    try:
        with psycopg.connect(
            dbname="postgres",
            host=host,
            port=port,
            user=str(config.get("USER") or "postgres"),
            password=str(config.get("PASSWORD") or "") or None,
            connect_timeout=3,
            autocommit=True,
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
                print(f"preflight: created database {name}")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {host}:{port} cannot be reached ({first}); {PG_HINT}"
    return None


def check_redis(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} cannot be reached ({exc}); {REDIS_HINT}"
    return None


def main() -> int:
    try:
        database_url = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
        redis_url = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
    except ImproperlyConfiguredEnv as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    problems = [p for p in (check_postgres(database_url), check_redis(redis_url)) if p]
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
