"""``python manage.py ingest [--once]`` — follow the chain into the ledger (one active replica per chain)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.chain import ChainClient, RpcError
from monitoring.ingest.config import IngestConfigError, ingest_source_load
from monitoring.ingest.ledger import ledger_reset
from monitoring.ingest.sync import ChainChangedError, DeepReorgError, IngestConfig, Ingester
from monitoring.locks import advisory_lock

logger = logging.getLogger("monitoring.ingest")


class Command(BaseCommand):
    help = "Ingest NewBatch, BatchVerified and registry events into Postgres, following the chain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="catch up to the head, then exit")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="forget the ingested ledger first (for a chain that was replaced, e.g. a restarted devnet)",
        )
        parser.add_argument(
            "--confirmations",
            type=int,
            default=None,
            help="blocks below the head to stay (INGEST_CONFIRMATIONS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            source = ingest_source_load()
        except IngestConfigError as exc:
            raise CommandError(str(exc)) from exc
        client = ChainClient(source.rpc_url)
        try:
            chain_id = client.chain_id()
        except RpcError as exc:
            raise CommandError(f"chain at {source.rpc_url} cannot be reached: {exc}") from exc
        confirmations = options["confirmations"]
        config = IngestConfig(
            chain_id=chain_id,
            contracts=source.contracts,
            confirmations=settings.INGEST_CONFIRMATIONS if confirmations is None else confirmations,
            blocks_kept=settings.INGEST_BLOCKS_KEPT,
            initial_range=settings.INGEST_INITIAL_RANGE,
            max_range=settings.INGEST_MAX_RANGE,
        )
        ingester = Ingester(client=client, config=config)

        stopping = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

        with advisory_lock(f"ingest:{chain_id}") as lock:
            if options["reset"]:
                ledger_reset(chain_id=chain_id, reason=f"`ingest --reset` against {source.rpc_url}")
                self.stdout.write("ingest: ledger reset")
            self.stdout.write(
                f"ingest: chain {chain_id} at {source.rpc_url}, "
                + ", ".join(f"{c.kind} {c.address} from block {c.start_block}" for c in source.contracts)
                + f", {config.confirmations} confirmations"
            )
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    report = ingester.sync_once()
                except (DeepReorgError, ChainChangedError) as exc:
                    raise CommandError(str(exc)) from exc
                except RpcError as exc:
                    if options["once"]:
                        raise CommandError(f"chain error: {exc}") from exc
                    logger.warning("ingest: chain error (%s); trying again", exc)
                    stopping.wait(settings.INGEST_POLL_INTERVAL)
                    continue
                if options["once"]:
                    self.stdout.write(
                        f"ingest: caught up to block {report.target} (head {report.head}): {report.events} events, "
                        f"{report.batches_created} batches created, {report.batches_verified} verified, "
                        f"{report.reorgs} reorgs"
                    )
                    return
                if not lock.still_held():
                    raise CommandError(
                        "lost the ingest lock (database connection dropped); exiting so a standby takes over"
                    )
                stopping.wait(max(0.0, settings.INGEST_POLL_INTERVAL - (time.monotonic() - started)))
        self.stdout.write("ingest: stopped")
