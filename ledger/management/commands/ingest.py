"""``python manage.py ingest [--once]`` — follow the chain into the ledger (one active replica per chain)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain import ChainClient, RpcError
from controlplane.locks import advisory_lock
from controlplane.loops import Loop, loop_run
from ledger.ingest.config import IngestConfigError, IngestSource, ingest_source_load
from ledger.ingest.ledger import ledger_reset
from ledger.ingest.sync import ChainChangedError, DeepReorgError, IngestConfig, Ingester


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
        confirmations = options["confirmations"]
        confirmations = settings.INGEST_CONFIRMATIONS if confirmations is None else confirmations
        if options["once"]:
            self._once(source=source, client=client, confirmations=confirmations, reset=options["reset"])
            return

        ingester: Ingester | None = None
        pending_reset = bool(options["reset"])

        def lock_name() -> str:
            nonlocal ingester
            if ingester is None:
                ingester = _ingester(
                    client=client, chain_id=client.chain_id(), source=source, confirmations=confirmations
                )
            return f"ingest:{ingester.config.chain_id}"

        def active() -> None:
            nonlocal pending_reset
            assert ingester is not None
            if (
                pending_reset
            ):  # only on the first activation: a later one (after a Postgres restart) must keep it
                ledger_reset(
                    chain_id=ingester.config.chain_id, reason=f"`ingest --reset` against {source.rpc_url}"
                )
                self.stdout.write("ingest: ledger reset")
                pending_reset = False
            self.stdout.write(_describe(source, ingester))

        def step() -> None:
            assert ingester is not None
            ingester.sync_once()

        try:
            loop_run(
                Loop(
                    name="ingest",
                    step=step,
                    interval=float(settings.INGEST_POLL_INTERVAL),
                    lock=lock_name,
                    on_active=active,
                    outages={"chain": (RpcError,)},
                    # Nothing a retry can repair: stop loudly (the incident is recorded).
                    fatal=(DeepReorgError, ChainChangedError),
                )
            )
        except (DeepReorgError, ChainChangedError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("ingest: stopped")

    def _once(self, *, source: IngestSource, client: ChainClient, confirmations: int, reset: bool) -> None:
        try:
            ingester = _ingester(
                client=client, chain_id=client.chain_id(), source=source, confirmations=confirmations
            )
        except RpcError as exc:
            raise CommandError(f"chain at {source.rpc_url} cannot be reached: {exc}") from exc
        try:
            with advisory_lock(f"ingest:{ingester.config.chain_id}"):
                if reset:
                    ledger_reset(
                        chain_id=ingester.config.chain_id, reason=f"`ingest --reset` against {source.rpc_url}"
                    )
                    self.stdout.write("ingest: ledger reset")
                self.stdout.write(_describe(source, ingester))
                report = ingester.sync_once()
        except TimeoutError as exc:
            raise CommandError(f"ingest: {exc}") from exc
        except (DeepReorgError, ChainChangedError) as exc:
            raise CommandError(str(exc)) from exc
        except RpcError as exc:
            raise CommandError(f"chain error: {exc}") from exc
        self.stdout.write(
            f"ingest: caught up to block {report.target} (head {report.head}): {report.events} events, "
            f"{report.batches_created} batches created, {report.batches_verified} verified, "
            f"{report.reorgs} reorgs"
        )


def _ingester(*, client: ChainClient, chain_id: int, source: IngestSource, confirmations: int) -> Ingester:
    config = IngestConfig(
        chain_id=chain_id,
        contracts=source.contracts,
        confirmations=confirmations,
        blocks_kept=settings.INGEST_BLOCKS_KEPT,
        initial_range=settings.INGEST_INITIAL_RANGE,
        max_range=settings.INGEST_MAX_RANGE,
        range_logs=settings.INGEST_RANGE_LOGS,
    )
    return Ingester(client=client, config=config)


def _describe(source: IngestSource, ingester: Ingester) -> str:
    return (
        f"ingest: chain {ingester.config.chain_id} at {source.rpc_url}, "
        + ", ".join(f"{c.kind} {c.address} from block {c.start_block}" for c in source.contracts)
        + f", {ingester.config.confirmations} confirmations"
    )
