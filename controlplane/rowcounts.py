"""Row counts kept by the writes: what ``count(*) … GROUP BY status`` answered by scanning a table that grows.

Each counted table has statement-level triggers (insert, update, delete, truncate) that append the net change of
each key to ``controlplane_rowcount``: one small insert per statement, never an update of a shared row, so
concurrent writers never wait for each other (a single counter row would serialise the intake). A reader sums a
key's rows; ``rowcounts_compact`` (run by the recovery loop) folds them into one row per key, which keeps reads
bounded by the writes since the last compaction, not by history.

A key is any text the table's key expression gives for a row (``batches:verified``, ``recovery_tasks:forward:done``);
a row may count under several keys, and an element ``key|v`` adds the integer v instead of 1 (a sum).
TRUNCATE of a counted table drops its keys (the test suite flushes tables).
"""

from __future__ import annotations

from django.db import connection, transaction

# Trigger arguments: the key expression (SQL over one row, giving text[]) and the table's key prefix.
FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION controlplane_rowcount_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    keys text := TG_ARGV[0];
    body text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM controlplane_rowcount WHERE starts_with(key, TG_ARGV[1] || ':');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        body := format('SELECT unnest(%s), 1 FROM rowcount_new', keys);
    ELSIF TG_OP = 'DELETE' THEN
        body := format('SELECT unnest(%s), -1 FROM rowcount_old', keys);
    ELSE
        body := format(
            'SELECT unnest(%s), 1 FROM rowcount_new UNION ALL SELECT unnest(%s), -1 FROM rowcount_old', keys, keys
        );
    END IF;
    -- An element 'key|v' adds v (a sum, not a count) under key.
    EXECUTE format(
        'INSERT INTO controlplane_rowcount (key, n) SELECT split_part(k, %L, 1), sum(d * v) FROM ('
        'SELECT k, d, coalesce(nullif(split_part(k, %L, 2), %L)::bigint, 1) AS v FROM (%s) t(k, d)'
        ') u GROUP BY 1 HAVING sum(d * v) <> 0',
        '|', '|', '', body
    );
    RETURN NULL;
END
$fn$
"""
DROP_FUNCTION_SQL = "DROP FUNCTION IF EXISTS controlplane_rowcount_apply()"


def triggers_sql(*, table: str, prefix: str, keys: str) -> tuple[str, str]:
    """(create, drop) SQL for ``table``'s counting triggers, and the backfill of its current rows.

    Transition tables need one trigger per event (Postgres allows no event list with them).
    """
    quoted = keys.replace("'", "''")
    create = [
        f"""CREATE TRIGGER {table}_rowcount_{event.lower()} AFTER {event} ON {table}
            REFERENCING {refs} FOR EACH STATEMENT
            EXECUTE FUNCTION controlplane_rowcount_apply('{quoted}', '{prefix}')"""
        for event, refs in (
            ("INSERT", "NEW TABLE AS rowcount_new"),
            ("UPDATE", "NEW TABLE AS rowcount_new OLD TABLE AS rowcount_old"),
            ("DELETE", "OLD TABLE AS rowcount_old"),
        )
    ]
    create.append(
        f"""CREATE TRIGGER {table}_rowcount_truncate AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION controlplane_rowcount_apply('{quoted}', '{prefix}')"""
    )
    create.append(f"DELETE FROM controlplane_rowcount WHERE starts_with(key, '{prefix}:')")
    create.append(
        f"""INSERT INTO controlplane_rowcount (key, n)
            SELECT split_part(k, '|', 1), sum(coalesce(nullif(split_part(k, '|', 2), '')::bigint, 1))
            FROM (SELECT unnest({keys}) FROM {table}) t(k) GROUP BY 1"""
    )
    drop = [
        f"DROP TRIGGER IF EXISTS {table}_rowcount_{event} ON {table}"
        for event in ("insert", "update", "delete", "truncate")
    ]
    drop.append(f"DELETE FROM controlplane_rowcount WHERE starts_with(key, '{prefix}:')")
    return ";\n".join(create), ";\n".join(drop)


def rowcounts(*, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` (``"batches"`` reads ``batches:*``) and its count, without the prefix."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, sum(n) FROM controlplane_rowcount WHERE starts_with(key, %s) GROUP BY key "
            "HAVING sum(n) <> 0",
            [prefix + ":"],
        )
        return {str(key)[len(prefix) + 1 :]: int(n) for key, n in cursor.fetchall()}


def rowcounts_compact() -> int:
    """Fold each key's rows into one; returns the rows removed. One compactor at a time (advisory lock)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtextextended('controlplane_rowcount', 0))")
        row = cursor.fetchone()
        if not row or not row[0]:
            return 0
        cursor.execute(
            """
            WITH gone AS (
                DELETE FROM controlplane_rowcount WHERE key IN (
                    SELECT key FROM controlplane_rowcount GROUP BY key HAVING count(*) > 1
                ) RETURNING key, n
            ),
            kept AS (
                INSERT INTO controlplane_rowcount (key, n)
                SELECT key, sum(n) FROM gone GROUP BY key HAVING sum(n) <> 0 RETURNING 1
            )
            SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM kept)
            """
        )
        result = cursor.fetchone()
    return int(result[0]) if result else 0
