"""``python manage.py devnet up|down|status|stop|start|kill|replace-aggregator|chaos|scenario``."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devnet.scenarios import SCENARIOS
from devnet.state import DevnetStateError, load_state


def _add_network_options(parser: CommandParser) -> None:
    parser.add_argument("--operators", type=int, default=5, help="number of operators (default 5)")
    parser.add_argument("--seed", default="devnet", help="seed for every key (default 'devnet')")
    parser.add_argument("--block-time", type=float, default=1.0, help="seconds per block (0: one per tx)")
    parser.add_argument("--batch-interval", type=float, default=5.0, help="seconds between batches")
    parser.add_argument("--invalid-rate", type=float, default=0.0, help="share of batches with a bad proof")
    parser.add_argument("--proofs-per-batch", type=int, default=4, help="proofs in each batch")
    parser.add_argument(
        "--direct", action="store_true", help="operators send to the aggregator directly (no control plane)"
    )
    parser.add_argument(
        "--control-plane-url", default="http://127.0.0.1:8000", help="where operators send signatures"
    )
    parser.add_argument("--task-window", type=float, default=100.0, help="aggregator task expiry (s)")
    _add_wire_options(parser)


def _add_wire_options(parser: CommandParser, *, rpc_default: str | None = "127.0.0.1:8090") -> None:
    parser.add_argument(
        "--wire",
        choices=("gob", "http"),
        default="gob",
        help="how operators send: Go net/rpc as Aligned's (default), or JSON over HTTP for comparison",
    )
    parser.add_argument(
        "--control-plane-rpc",
        default=rpc_default,
        help="the control plane's net/rpc intake (aggregator_rpc) that operators send to over gob"
        + (f" (default {rpc_default})" if rpc_default else " (default: a free port)"),
    )


class Command(BaseCommand):
    help = "Run the reference devnet: chain, contracts, operators, aggregator and a batcher; inject faults."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)

        up = sub.add_parser(
            "up", help="start the chain, deploy, register, start aggregator, operators, batcher"
        )
        _add_network_options(up)
        up.add_argument("--port", type=int, default=None, help="chain port (default: a free one)")

        sub.add_parser("down", help="stop everything the devnet started, by PID")
        sub.add_parser("status", help="print the devnet's components and whether they run")
        for action, text in (
            ("stop", "stop a component (SIGTERM)"),
            ("start", "start a stopped component again"),
            ("kill", "kill a component (SIGKILL)"),
        ):
            p = sub.add_parser(action, help=text)
            p.add_argument("component", help="chain, aggregator, batcher or operator-1..N")
        sub.add_parser("replace-aggregator", help="a new aggregator process: new boot id, same key and URL")

        chaos = sub.add_parser(
            "chaos",
            help="--seed N: a reproducible schedule of faults on the running devnet; --seeds 1-50: the chaos "
            "suite (a fresh devnet and control plane per seed, faults in every component, invariants checked)",
        )
        which = chaos.add_mutually_exclusive_group(required=True)
        which.add_argument("--seed", type=int, help="one schedule, applied to the running devnet")
        which.add_argument("--seeds", help="the suite over these seeds: 1-50, 17, or 3,7,9-12")
        chaos.add_argument(
            "--duration",
            type=float,
            default=None,
            help="seconds of faults (the suite: 60 per seed by default)",
        )
        chaos.add_argument(
            "--faults",
            default="all",
            choices=["all", "devnet", "control-plane", "infra"],
            help="the suite's fault kinds (default all)",
        )
        chaos.add_argument(
            "--out", default=None, help="the suite's working and log directory (default $DEVNET_DIR/chaos)"
        )
        chaos.add_argument(
            "--keep-logs",
            action="store_true",
            help="keep every seed's logs (a failing seed's are always kept)",
        )

        scenario = sub.add_parser(
            "scenario", help="run a named fault scenario on a fresh devnet and count losses"
        )
        scenario.add_argument("name", choices=list(SCENARIOS))
        scenario.add_argument(
            "--direct", action="store_true", help="operators send to the aggregator directly"
        )
        scenario.add_argument("--batches", type=int, default=6, help="batches to create (default 6)")
        scenario.add_argument(
            "--control-plane-url",
            default="http://127.0.0.1:8000",
            help="the control plane (without --direct)",
        )
        _add_wire_options(scenario, rpc_default=None)  # the scenario starts its own aggregator_rpc

        for internal in ("run-batcher", "run-aggregator", "run-operator"):
            p = sub.add_parser(internal, help=f"(internal) run the {internal[4:]} in the foreground")
            p.add_argument("--state", required=True, help="the devnet file")
            if internal == "run-operator":
                p.add_argument("--index", type=int, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        handlers = {
            "up": self._up,
            "down": self._down,
            "status": self._status,
            "stop": self._stop,
            "start": self._start,
            "kill": self._kill,
            "replace-aggregator": self._replace_aggregator,
            "chaos": self._chaos,
            "scenario": self._scenario,
            "run-batcher": self._run_batcher,
            "run-aggregator": self._run_aggregator,
            "run-operator": self._run_operator,
        }
        try:
            handlers[action](options)
        except DevnetStateError as exc:
            raise CommandError(str(exc)) from exc

    def _up(self, options: dict[str, Any]) -> None:
        from devnet.network import devnet_up

        state = devnet_up(config=_config(options, port=options["port"]))
        self.stdout.write(
            f"devnet up: chain {state['rpc_url']} (id {state['chain_id']}), "
            f"service manager {state['contracts']['service_manager']}, "
            f"registry {state['contracts']['registry']}, {len(state['operators'])} operators, "
            f"aggregator {state['aggregator']['url']}, batch data on {state['batcher']['data_url']}, "
            f"operators send over {state.get('operator_wire', 'http')} to "
            f"{'the aggregator (direct)' if state['direct'] else state['control_plane_url']}; "
            f"file {settings.DEVNET_FILE}"
        )

    def _down(self, options: dict[str, Any]) -> None:
        from devnet.network import devnet_down

        stopped = devnet_down()
        self.stdout.write(
            "devnet down: " + (f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
        )

    def _status(self, options: dict[str, Any]) -> None:
        from devnet.network import devnet_status

        self.stdout.write(json.dumps(devnet_status(), indent=2))

    def _stop(self, options: dict[str, Any]) -> None:
        from devnet.components import component_stop

        was = component_stop(name=options["component"])
        self.stdout.write(f"{options['component']}: " + ("stopped" if was else "was not running"))

    def _kill(self, options: dict[str, Any]) -> None:
        from devnet.components import component_stop

        was = component_stop(name=options["component"], kill=True)
        self.stdout.write(f"{options['component']}: " + ("killed" if was else "was not running"))

    def _start(self, options: dict[str, Any]) -> None:
        from devnet.components import component_start

        pid = component_start(name=options["component"])
        self.stdout.write(f"{options['component']}: started (pid {pid})")

    def _replace_aggregator(self, options: dict[str, Any]) -> None:
        from devnet.components import aggregator_replace

        old, new = aggregator_replace()
        self.stdout.write(f"aggregator: replaced (pid {old} -> {new}; a new boot id, the same key)")

    def _chaos(self, options: dict[str, Any]) -> None:
        if options["seeds"] is None:
            from devnet.chaos import chaos_run

            if options["duration"] is None:
                raise CommandError("devnet chaos --seed N needs --duration SECONDS")
            chaos_run(seed=options["seed"], duration=options["duration"], say=self.stdout.write)
            return
        from devnet.chaos import parse_seeds
        from devnet.chaos_suite import chaos_suite

        try:
            seeds = parse_seeds(options["seeds"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        duration = 60.0 if options["duration"] is None else float(options["duration"])
        if duration < 10:
            raise CommandError("--duration must be at least 10 seconds")
        root = Path(options["out"]) if options["out"] else Path(settings.DEVNET_DIR) / "chaos"

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        # SIGTERM unwinds like Ctrl-C, so every server, devnet and control-plane process the suite started is
        # stopped by its cleanup; a second signal while it cleans up is ignored rather than cutting it short.
        def stop(signum: int, frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            results = chaos_suite(
                seeds=seeds,
                duration=duration,
                faults=options["faults"],
                root=root,
                say=say,
                keep=options["keep_logs"],
            )
        except KeyboardInterrupt:
            raise CommandError("chaos suite interrupted", returncode=130) from None
        failed = [r.seed for r in results if not r.ok]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(results)} seeds failed: {', '.join(map(str, failed))}", returncode=1
            )

    def _scenario(self, options: dict[str, Any]) -> None:
        from devnet.scenarios import CONTROL_PLANE_SCENARIOS, scenario_run

        if options["direct"] and options["name"] in CONTROL_PLANE_SCENARIOS:
            raise CommandError(
                f"scenario {options['name']} injects a fault into the control plane: drop --direct"
            )
        summary = scenario_run(
            name=options["name"],
            direct=options["direct"],
            batches=options["batches"],
            control_plane_url=options["control_plane_url"],
            wire=options["wire"],
            control_plane_rpc=options["control_plane_rpc"],
            say=self.stdout.write,
        )
        self.stdout.write(
            f"batches: {summary.created} created, {summary.verified} verified, {summary.lost} lost"
        )

    def _foreground(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def _run_batcher(self, options: dict[str, Any]) -> None:
        from devnet.batcher import run_batcher

        self._foreground()
        state_file = Path(options["state"])
        run_batcher(state=load_state(state_file), batches_dir=state_file.parent / "batches")

    def _run_aggregator(self, options: dict[str, Any]) -> None:
        from devnet.aggregator import run_aggregator

        self._foreground()
        run_aggregator(state=load_state(Path(options["state"])))

    def _run_operator(self, options: dict[str, Any]) -> None:
        from devnet.operator import run_operator

        self._foreground()
        state_file = Path(options["state"])
        state = load_state(state_file)
        run_operator(
            state=state,
            index=options["index"],
            direct=bool(state.get("direct")),
            acks_path=state_file.parent / "acks" / f"operator-{options['index'] + 1}.jsonl",
        )


def _config(options: dict[str, Any], *, port: int | None = None) -> Any:
    from devnet.network import DevnetConfig

    return DevnetConfig(
        operators=options["operators"],
        seed=options["seed"],
        port=port,
        block_time=options["block_time"],
        batch_interval=options["batch_interval"],
        invalid_rate=options["invalid_rate"],
        proofs_per_batch=options["proofs_per_batch"],
        direct=options["direct"],
        control_plane_url=options["control_plane_url"],
        wire=options["wire"],
        control_plane_rpc=options["control_plane_rpc"],
        task_window=options["task_window"],
    )
