"""``python manage.py devnet up|down|status`` — the reference network on this machine."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devnet.state import DevnetStateError, load_state


class Command(BaseCommand):
    help = "Run the reference devnet: anvil chain, contracts, registered operators and a batcher."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)

        up = sub.add_parser("up", help="start anvil, deploy, register operators, start the batcher")
        up.add_argument("--operators", type=int, default=5, help="number of operators (default 5)")
        up.add_argument("--seed", default="devnet", help="seed for every key (default 'devnet')")
        up.add_argument("--port", type=int, default=None, help="anvil port (default: a free one)")
        up.add_argument("--block-time", type=float, default=1.0, help="seconds per block (0: one per tx)")
        up.add_argument("--batch-interval", type=float, default=5.0, help="seconds between batches")
        up.add_argument("--invalid-rate", type=float, default=0.0, help="share of batches with a bad proof")
        up.add_argument("--proofs-per-batch", type=int, default=4, help="proofs in each batch")

        sub.add_parser("down", help="stop everything the devnet started, by PID")
        sub.add_parser("status", help="print the devnet's components and whether they run")

        batcher = sub.add_parser("run-batcher", help="(internal) run the batcher in the foreground")
        batcher.add_argument("--state", required=True, help="the devnet file")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "up":
                self._up(options)
            elif action == "down":
                self._down()
            elif action == "status":
                self._status()
            elif action == "run-batcher":
                self._run_batcher(Path(options["state"]))
        except DevnetStateError as exc:
            raise CommandError(str(exc)) from exc

    def _up(self, options: dict[str, Any]) -> None:
        from devnet.network import DevnetConfig, devnet_up

        config = DevnetConfig(
            operators=options["operators"],
            seed=options["seed"],
            port=options["port"],
            block_time=options["block_time"],
            batch_interval=options["batch_interval"],
            invalid_rate=options["invalid_rate"],
            proofs_per_batch=options["proofs_per_batch"],
        )
        state = devnet_up(config=config)
        self.stdout.write(
            f"devnet up: chain {state['rpc_url']} (id {state['chain_id']}), "
            f"service manager {state['contracts']['service_manager']}, "
            f"registry {state['contracts']['registry']}, {len(state['operators'])} operators, "
            f"batch data on {state['batcher']['data_url']}; file {settings.DEVNET_FILE}"
        )

    def _down(self) -> None:
        from devnet.network import devnet_down

        stopped = devnet_down()
        if stopped:
            self.stdout.write("devnet down: stopped " + ", ".join(stopped))
        else:
            self.stdout.write("devnet down: nothing was running")

    def _status(self) -> None:
        from devnet.network import devnet_status

        self.stdout.write(json.dumps(devnet_status(), indent=2))

    def _run_batcher(self, state_file: Path) -> None:
        from devnet.batcher import run_batcher

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        state = load_state(state_file)
        run_batcher(state=state, batches_dir=state_file.parent / "batches")
