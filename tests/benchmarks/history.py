"""``make bench`` history part: each recurring operation timed on a 10k-batch and on a 1M-batch history.

Both histories are made by ``bench_history`` (same shape, same batch interval) in databases of their own, in the
same run. Each operation runs inside a transaction that is rolled back, so every repeat sees the same rows
(passes that write — alerts, recovery, the verifier — would otherwise change what the next repeat does). The
figure is the median of the repeats after one warm-up, and the ratio is large over small: cost that grows with
history shows as a ratio above 1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import Client

GOAL = 1.5


class _Rollback(Exception):
    pass


@dataclass(frozen=True)
class Subjects:
    """What the operations look at, picked the same way in each history."""

    newest_batch: str  # pending, on the first page
    verified_batch: str  # deep in the history, verified, its detail pruned or kept
    operator: str  # the lagging one: it owes the newest pending batches
    batch_pages: int
    operator_pages: int
    middle_cursor: str  # the API's keyset cursor halfway down the history


def _use_database(name: str) -> None:
    """Point the default connection at another database. The connection pool was made for the old one: it goes."""
    connection.close()
    connection.close_pool()  # type: ignore[attr-defined]
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def _database_create(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')


def _database_exists(name: str, *, admin_database: str) -> bool:
    _use_database(admin_database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


def history_prepare(*, name: str, batches: int, admin_database: str, reuse: bool) -> None:
    """A fresh database holding ``batches`` of history (made by the real command); with ``reuse``, one made
    before is kept when it holds that many batches (migrated to the current schema)."""
    from ledger.models import Batch

    if reuse:
        try:
            _use_database(name)
            call_command("migrate", verbosity=0)
            if Batch.objects.count() == batches:
                print(f"history: reusing {name} ({batches:,} batches)", flush=True)
                return
        except Exception:
            pass
    _use_database(admin_database)
    _database_create(name)
    _use_database(name)
    started = time.monotonic()
    call_command("bench_history", batches=batches, stdout=_Quiet())
    print(f"history: {batches:,} batches generated in {time.monotonic() - started:.0f} s", flush=True)


class _Quiet:
    def write(self, text: str) -> None:
        if text.startswith("bench_history:"):
            print("  " + text.strip(), flush=True)

    def flush(self) -> None:
        pass


def _subjects() -> Subjects:
    from api.views import Pagination
    from ledger.models import Batch, Operator
    from liveness.models import OperatorLiveness

    size = int(Pagination.page_size or 50)
    newest = Batch.objects.order_by("-created_block", "-id").values_list("identifier", flat=True)[0]
    count = Batch.objects.count()
    # The same relative position in both histories: a tenth of the way back.
    verified = (
        Batch.objects.filter(status="verified")
        .order_by("-created_block")
        .values_list("identifier", flat=True)[count // 10]
    )
    middle = Batch.objects.order_by("-created_block", "-id").values_list("created_block", "id")[count // 2]
    # bench_history's lagging operator is the one it leaves down.
    lagging = OperatorLiveness.objects.filter(state="down").values_list("operator_id", flat=True)[0]
    return Subjects(
        newest_batch=newest,
        verified_batch=verified,
        operator=lagging,
        batch_pages=max(1, (count + size - 1) // size),
        operator_pages=max(1, (Operator.objects.count() + size - 1) // size),
        middle_cursor=f"{middle[0]}.{middle[1]}",
    )


def _client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username="bench-history", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def _get(client: Client, path: str, **headers: str) -> Any:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, f"{path}: HTTP {response.status_code}"
    return response


def operations(subjects: Subjects) -> list[tuple[str, Callable[[Client], object]]]:
    from alerts.services import alerts_evaluate
    from dashboard.live.snapshots import live_batch_snapshot, live_overview_snapshot
    from intake.jobs import intake_sweep
    from recovery.management.commands.recovery import recovery_pass
    from recovery.services.catchup import operator_catchup_batches, operator_last_known_good_block
    from recovery.services.retention import retention_prune

    s = subjects

    def catchup_plan(_: Client) -> object:
        owed = operator_catchup_batches(operator_id=s.operator)
        assert len(owed) >= 100, f"the lagging operator owes {len(owed)} batches"
        return operator_last_known_good_block(operator_id=s.operator)

    return [
        ("metrics scrape", lambda c: _get(c, "/metrics", Authorization=f"Bearer {settings.METRICS_TOKEN}")),
        ("overview page", lambda c: _get(c, "/")),
        ("batch list page", lambda c: _get(c, "/batches/")),
        ("batch detail page (newest)", lambda c: _get(c, f"/batches/{s.newest_batch}/")),
        ("batch detail page (old)", lambda c: _get(c, f"/batches/{s.verified_batch}/")),
        ("operator detail page", lambda c: _get(c, f"/operators/{s.operator}/")),
        ("overview snapshot", lambda c: live_overview_snapshot()),
        ("batch snapshot", lambda c: live_batch_snapshot(identifier=s.newest_batch)),
        ("api batches (first page)", lambda c: _get(c, "/api/v1/batches/")),
        ("api batches (deep page, cursor)", lambda c: _get(c, f"/api/v1/batches/?cursor={s.middle_cursor}")),
        ("api operators (first page)", lambda c: _get(c, "/api/v1/operators/")),
        ("api operators (last page)", lambda c: _get(c, f"/api/v1/operators/?page={s.operator_pages}")),
        ("alerts pass", lambda c: alerts_evaluate()),
        ("recovery pass", lambda c: recovery_pass()),
        ("verifier pass", lambda c: intake_sweep()),
        ("retention pass", lambda c: retention_prune()),
        ("catch-up plan (100 missed)", catchup_plan),
    ]


def _time_once(fn: Callable[[Client], object], client: Client) -> float:
    started = time.perf_counter()
    try:
        with transaction.atomic():
            fn(client)
            raise _Rollback
    except _Rollback:
        pass
    return time.perf_counter() - started


def history_measure(*, repeats: int) -> dict[str, float]:
    """Median seconds of each operation on the current database."""
    from recovery.services.retention import retention_prune

    # Caught up first, as the recovery loop keeps it: otherwise the pass timed would prune whatever crossed the
    # retention cutoff since the history was made (real work, but not the cost of a pass that has none).
    retention_prune(budget=10**9)
    client = _client()
    subjects = _subjects()
    timings: dict[str, float] = {}
    for name, fn in operations(subjects):
        _time_once(fn, client)  # warm-up: caches, plans, the first page of the table in memory
        timings[name] = statistics.median(_time_once(fn, client) for _ in range(repeats))
    return timings


def history_report(*, small: int, large: int, timings: dict[int, dict[str, float]]) -> tuple[float, str]:
    """Print each operation at both sizes and its ratio; the worst ratio and its operation."""
    print(f"history: median ms per operation, {small:,} vs {large:,} batches (goal: every ratio <= {GOAL})")
    worst = (0.0, "")
    for name, small_s in timings[small].items():
        large_s = timings[large][name]
        ratio = large_s / small_s if small_s > 0 else float("inf")
        worst = max(worst, (ratio, name))
        print(f"  {name:32s} {small_s * 1000:9.1f} {large_s * 1000:9.1f}   {ratio:5.2f}")
    print(f"history: worst ratio {worst[0]:.2f} ({worst[1]})")
    return worst


def bench_history(*, small: int, large: int, repeats: int, admin_database: str, reuse: bool = False) -> None:
    settings.METRICS_TOKEN = settings.METRICS_TOKEN or "bench-history"
    settings.ALLOWED_HOSTS = ["*"]
    timings: dict[int, dict[str, float]] = {}
    for batches in (small, large):
        name = f"{admin_database}_history_{batches}"
        history_prepare(name=name, batches=batches, admin_database=admin_database, reuse=reuse)
        timings[batches] = history_measure(repeats=repeats)
    _use_database(admin_database)
    history_report(small=small, large=large, timings=timings)
