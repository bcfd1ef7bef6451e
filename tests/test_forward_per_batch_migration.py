"""Forward tasks became one per batch and verifier pass: a database holding open per-signature forwards keeps
their work, renamed to the batch they belong to, and settled ones keep their history."""

from __future__ import annotations

from tests import test_stage_apps_migration as migration

database_url = migration.database_url

BATCH = "0x" + "ab" * 32


def test_it_renames_open_per_signature_forwards_to_their_batch(database_url: str) -> None:
    migration._migrate(database_url, "recovery", "0007_brin_autosummarize")
    with migration._connect(database_url.rsplit("/", 1)[1]) as conn:
        ids = [
            conn.execute(
                """
                INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
                    signature_x, signature_y, status, status_reason, conflicting, source, received_at)
                VALUES (%s, %s, %s, %s, '0x1', '0x2', 'verified', '', false, '', now()) RETURNING id
                """,
                [BATCH, "0x" + "cd" * 32, "0x" + "ef" * 20, "0x" + f"{n:02x}" * 32],
            ).fetchone()[0]  # type: ignore[index]
            for n in (1, 2, 3)
        ]
        for signature_id, status in zip(ids, ["pending", "running", "done"], strict=True):
            conn.execute(
                """
                INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, leased_by,
                    last_error, requested_by, reason, result, created_at, updated_at)
                VALUES ('forward', %s, %s, 0, now(), '', '', 'system', 'verified', '{}', now(), now())
                """,
                [str(signature_id), status],
            )
    migration._migrate(database_url, "recovery", "0008_forward_per_batch")
    with migration._connect(database_url.rsplit("/", 1)[1]) as conn:
        rows = conn.execute("SELECT status, subject FROM recovery_recoverytask ORDER BY id").fetchall()
    assert rows == [
        ("pending", f"{BATCH}:{ids[0]}"),
        ("running", f"{BATCH}:{ids[1]}"),
        ("done", str(ids[2])),
    ]
