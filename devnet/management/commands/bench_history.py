"""``python manage.py bench_history --batches N`` — fill the database with a realistic history for scale tests.

100 operators by default, a batch every 31.5 s (1M batches is a year), detail kept as the retention settings
keep it. Refuses a database that already holds batches, signatures or operators unless ``--reset`` empties it
first: a history merged into real data would make both meaningless.
"""

from __future__ import annotations

import time

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devnet.history import HistoryShape, history_clear, history_generate, history_is_empty


class Command(BaseCommand):
    help = "Fill the database with a realistic history of N batches (for scale measurements; not for production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batches", type=int, required=True, help="batches in the history (e.g. 1000000)"
        )
        parser.add_argument("--operators", type=int, default=100)
        parser.add_argument("--interval", type=float, default=31.5, help="seconds between batches")
        parser.add_argument("--pending", type=int, default=120, help="newest batches still pending")
        parser.add_argument(
            "--lagging", type=int, default=100, help="newest pending batches one operator has not signed"
        )
        parser.add_argument(
            "--window-days",
            type=float,
            default=None,
            help="days of detail kept (default RETENTION_SIGNATURE_DAYS)",
        )
        parser.add_argument("--seed", default="history")
        parser.add_argument(
            "--reset", action="store_true", help="empty the ledger and every table filled here"
        )

    def handle(self, *args: object, **options: object) -> None:
        shape = HistoryShape(
            batches=int(options["batches"]),  # type: ignore[call-overload]
            operators=int(options["operators"]),  # type: ignore[call-overload]
            interval=float(options["interval"]),  # type: ignore[arg-type]
            pending=int(options["pending"]),  # type: ignore[call-overload]
            lagging=int(options["lagging"]),  # type: ignore[call-overload]
            window_days=options["window_days"],  # type: ignore[arg-type]
            seed=str(options["seed"]),
        )
        if shape.batches < 1:
            raise CommandError("--batches must be at least 1")
        if shape.operators < 2:
            raise CommandError("--operators must be at least 2")
        if shape.interval <= 0:
            raise CommandError("--interval must be positive")
        if not 0 <= shape.lagging <= shape.pending <= shape.batches:
            raise CommandError("need 0 <= --lagging <= --pending <= --batches")
        call_command("migrate", verbosity=0)
        if not history_is_empty():
            if not options["reset"]:
                raise CommandError(
                    "the database already holds batches, signatures or operators; "
                    "pass --reset to empty it first (everything in it is deleted)"
                )
            history_clear()
        started = time.monotonic()
        counts = history_generate(shape=shape, report=self.stdout.write)
        self.stdout.write(
            f"bench_history: {shape.batches:,} batches, {counts.get('signatures', 0):,} signatures "
            f"in {time.monotonic() - started:.0f} s"
        )
