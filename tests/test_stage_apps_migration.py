"""The models moved from ``monitoring`` to their stage apps without moving a table.

An existing database (migrated as it was before the move) is migrated forward: no table, column, constraint or
index changes (the same relations, by oid, with the same definitions), and the content types (so permissions and
admin history) follow the models to their new apps.
"""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DATABASE = f"controlplane_migrate_test_{os.getpid()}"
MOVES = [
    ("ledger", "0001_initial"),
    ("intake", "0001_initial"),
    ("liveness", "0001_initial"),
    ("progress", "0001_initial"),
    ("alerts", "0001_initial"),
    ("recovery", "0003_signature_in_intake"),
    ("monitoring", "0006_models_moved_to_stage_apps"),
]


def _connect(dbname: str) -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=dbname,
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        autocommit=True,
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    with _connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else f"{user}@"
    yield f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{DATABASE}"
    with _connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def _migrate(database_url: str, *target: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", *target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _schema(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """The moved apps' tables as Postgres holds them: relations by oid, columns, constraints and indexes."""
    tables = "(c.relname LIKE 'monitoring\\_%' OR c.relname LIKE 'recovery\\_%')"
    queries = {
        "relations": f"""SELECT c.oid::bigint, c.relname, c.relkind, c.relfilenode::bigint FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND {tables} ORDER BY c.relname""",
        "columns": f"""SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND {tables}
              AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum""",
        "constraints": f"""SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid WHERE {tables} ORDER BY c.relname, k.conname""",
        "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
            AND (tablename LIKE 'monitoring\\_%' OR tablename LIKE 'recovery\\_%') ORDER BY indexname""",
    }
    return {name: conn.execute(query).fetchall() for name, query in queries.items()}


def _content_types(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    rows = conn.execute("SELECT app_label, model, id FROM django_content_type").fetchall()
    return {(app, model): pk for app, model, pk in rows}


def test_it_migrates_an_existing_database_without_changing_a_table(database_url: str) -> None:
    # The database as it stood before the stage apps: everything up to the last migrations of that time.
    _migrate(database_url, "contenttypes")
    _migrate(database_url, "monitoring", "0005_batchrefusal")
    _migrate(database_url, "recovery", "0002_catchupask")
    with _connect(DATABASE) as conn:
        # Back then monitoring held the models, so its content types existed (permissions, admin history
        # point at them); today's monitoring has no models, so the partial migrate above does not make them.
        moved = importlib.import_module("monitoring.migrations.0006_models_moved_to_stage_apps").MOVED
        for model in sorted(m for models in moved.values() for m in models):
            conn.execute(
                "INSERT INTO django_content_type (app_label, model) VALUES ('monitoring', %s)", [model]
            )
        before = _schema(conn)
        old_types = _content_types(conn)
    assert len(before["relations"]) > 30  # the tables, their sequences and indexes are really there
    assert ("monitoring", "batch") in old_types
    assert ("monitoring", "webhookdelivery") in old_types

    # Forward to the move itself, in one run as a deployment would (the move depends on every other migration
    # of it); later migrations, new tables of later issues, are not part of it.
    _migrate(database_url, *MOVES[-1])

    with _connect(DATABASE) as conn:
        after = _schema(conn)
        new_types = _content_types(conn)
        applied = set(conn.execute("SELECT app, name FROM django_migrations").fetchall())
    assert set(MOVES) <= applied
    assert after == before
    # The same content type rows, relabelled: permissions and admin history follow the models.
    assert new_types[("ledger", "batch")] == old_types[("monitoring", "batch")]
    assert new_types[("intake", "signature")] == old_types[("monitoring", "signature")]
    assert new_types[("alerts", "webhookdelivery")] == old_types[("monitoring", "webhookdelivery")]
    assert not [key for key in new_types if key[0] == "monitoring"]


@pytest.mark.django_db
@pytest.mark.parametrize(("app", "migration"), MOVES)
def test_it_moves_state_only(app: str, migration: str) -> None:
    out = io.StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)
    statements = [
        line
        for line in out.getvalue().splitlines()
        if line.strip() and not line.startswith("--") and line not in ("BEGIN;", "COMMIT;")
    ]
    assert statements == []
