"""``make bench``: throughput against a baseline measured in the same run, printed as ratios.

ingest: backfill of >= 10,000 real NewBatchV3 logs from anvil into the ledger by the real Ingester, next to the
raw limit (one eth_getLogs + the same decoder + one COPY into a bare table, no ORM, no ledger).
intake: signatures posted (HTTP JSON), stored and verified end to end per pairing backend, next to one py-ecc
verify per signature; and with one web worker next to WEB_WORKERS workers.
live: websocket latency from a committed signature to the frame in chromium, next to a plain HTTP round trip.
bls: verifying N signatures of one batch one pairing check each, next to one aggregated check.
flood: time to quorum of one batch with 1,000 forged posts in one operator's name, next to none.
history: each recurring operation (scrape, pages, snapshots, API lists, passes, catch-up plan) on a 1M-batch
history next to a 10k-batch one.
recovery: an aggregator crash with 20 pending batches until all are verified, next to the no-fault quorum time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane_bench"
)
# The control plane's processes inherit these: a Redis database and a devnet directory of the bench's own.
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ["DEVNET_DIR"] = os.environ.get(
    "BENCH_DEVNET_DIR", os.path.join(tempfile.gettempdir(), "controlplane-bench-devnet")
)
os.environ["DEVNET_FILE"] = os.path.join(os.environ["DEVNET_DIR"], "devnet.json")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from web3 import Web3  # noqa: E402

from chain import ChainClient  # noqa: E402
from chain.abi import TOPICS, decode_log  # noqa: E402
from controlplane.preflight import check_postgres  # noqa: E402
from devnet import contracts  # noqa: E402
from devnet.anvil import Anvil, start_anvil  # noqa: E402
from tests.chain_fixtures import Net, net_deploy  # noqa: E402

TASKS_PER_TX = 100


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def make_logs(net: Net, total: int) -> None:
    """Real NewBatchV3 logs from the real service manager, TASKS_PER_TX per transaction."""
    artifact = contracts.load_artifact("LoadBatcher")
    deployer = net.account("deployer")
    factory = net.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = contracts.transact(
        net.w3, factory.constructor(Web3.to_checksum_address(net.service_manager)), account=deployer
    )
    loader = net.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    for start in range(0, total, TASKS_PER_TX):
        seed = start.to_bytes(32, "big")
        contracts.transact(
            net.w3,
            loader.functions.createTasks(seed, TASKS_PER_TX, "http://127.0.0.1:1/batches/bench.json"),
            account=deployer,
            gas=12_000_000,
        )


def reset_ledger() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE monitoring_chainevent, monitoring_batch, monitoring_operator, monitoring_operatorstake, "
            "monitoring_block, monitoring_ingestcursor, monitoring_ingestincident, monitoring_signature, "
            "monitoring_batchprogress, monitoring_batchprogresschange RESTART IDENTITY CASCADE"
        )
        # The truncate drops the batch counters' rows: vacuum them, so that each run starts from the same table
        # where autovacuum is off (as on CI's Postgres) instead of scanning every earlier run's dead rows.
        cursor.execute("VACUUM controlplane_rowcount")


def raw_limit(anvil: Anvil, net: Net, head: int) -> int:
    """getLogs over the whole range, decode each log, COPY the rows into a bare table: the ceiling."""
    client = ChainClient(anvil.url)
    logs = client.get_logs(
        addresses=[net.service_manager], topics=[[TOPICS["NewBatchV3"]]], from_block=0, to_block=head
    )
    rows = []
    for log in logs:
        decoded = decode_log(log.topics, log.data)
        assert decoded is not None
        rows.append(
            (
                log.block_number,
                log.block_hash,
                log.log_index,
                log.transaction_hash,
                decoded.args["batchMerkleRoot"],
                decoded.args["senderAddress"],
                decoded.args["taskCreatedBlock"],
                decoded.args["batchDataPointer"],
            )
        )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw")
        cursor.execute(
            "CREATE TABLE bench_raw (block_number bigint, block_hash text, log_index int, tx text, root text, "
            "sender text, task_created_block bigint, pointer text)"
        )
        with cursor.connection.cursor().copy("COPY bench_raw FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def bench_ingest(total: int, repeats: int) -> None:
    problem = check_postgres(os.environ["DATABASE_URL"])
    if problem:
        sys.exit(f"bench: {problem}")
    call_command("migrate", verbosity=0)
    anvil = start_anvil(extra_args=["--gas-limit", "30000000"])
    try:
        net = net_deploy(anvil, operators=3, seed="bench")
        print(f"bench ingest: creating {total} NewBatchV3 logs on anvil ...", flush=True)
        make_logs(net, total)
        head = net.w3.eth.block_number

        raw_times, ours_times = [], []
        for _ in range(repeats):
            count = 0

            def run_raw() -> None:
                nonlocal count
                count = raw_limit(anvil, net, head)

            raw_times.append(timed(run_raw))
            assert count == total, f"raw saw {count} logs"
            reset_ledger()
            ingester = net.ingester(confirmations=0)
            ours_times.append(timed(ingester.sync_once))
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM monitoring_batch")
                stored = cursor.fetchone()[0]
            assert stored == total, f"ingest stored {stored} batches"
        raw = total / statistics.median(raw_times)
        ours = total / statistics.median(ours_times)
        print(f"ingest backfill: {total} NewBatchV3 logs, median of {repeats} runs")
        print(f"  raw limit (eth_getLogs + decode + one COPY): {raw:10.0f} logs/s")
        print(f"  control plane ingest (cursor, events, ledger): {ours:10.0f} logs/s")
        print(f"  ratio: {ours / raw:.2f} (goal >= 0.60)")
    finally:
        anvil.stop()


@contextmanager
def bench_network(*, operators: int, batches: int, seed: str) -> Iterator[tuple[Net, dict[str, str]]]:
    """A migrated, empty ledger; a real anvil with ``operators`` registered and ``batches`` ingested; the
    environment for the control plane's processes."""
    problem = check_postgres(os.environ["DATABASE_URL"])
    if problem:
        sys.exit(f"bench: {problem}")
    call_command("migrate", verbosity=0)
    reset_ledger()
    anvil = start_anvil(extra_args=["--gas-limit", "30000000"])
    try:
        net = net_deploy(anvil, operators=operators, seed=seed)
        make_logs(net, batches)
        net.ingester(confirmations=0).sync_once()
        env = {
            **net.env(),
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "REDIS_URL": os.environ["REDIS_URL"],
        }
        yield net, env
    finally:
        anvil.stop()


def bench_intake_main(*, operators: int, batches: int, backends: list[str]) -> None:
    from tests.benchmarks.intake import bench_intake

    with bench_network(operators=operators, batches=batches, seed="bench-intake") as (net, env):
        bench_intake(net=net, env=env, backends=backends)


def bench_live_main(*, samples: int) -> None:
    from tests.benchmarks.intake import precompute
    from tests.benchmarks.live import bench_live, bench_live_report

    with bench_network(operators=samples, batches=TASKS_PER_TX, seed="bench-live") as (net, env):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM monitoring_signature")
            cursor.execute("SELECT merkle_root, sender, identifier FROM monitoring_batch ORDER BY id LIMIT 1")
            batches = [(r, s, i) for r, s, i in cursor.fetchall()]
        # Every operator signs the one batch whose page is open: each sample is a new accepted signature.
        bodies = precompute(net, batches)
        bench_live_report(bench_live(env=env, bodies=bodies, page_path=f"/batches/{batches[0][2]}/"))


def bench_flood_main(*, operators: int) -> None:
    from tests.benchmarks.flood import bench_flood

    with bench_network(operators=operators, batches=TASKS_PER_TX, seed="bench-flood") as (net, env):
        bench_flood(net=net, env=env)


def bench_wire_main(*, operators: int, batches: int) -> None:
    from tests.benchmarks.intake import precompute
    from tests.benchmarks.wire import bench_wire

    with bench_network(operators=operators, batches=batches, seed="bench-wire") as (net, env):
        with connection.cursor() as cursor:
            cursor.execute("SELECT merkle_root, sender, identifier FROM monitoring_batch ORDER BY id")
            rows = [(r, s, i) for r, s, i in cursor.fetchall()]
        bench_wire(env=env, bodies=precompute(net, rows))


def bench_history_main(*, sizes: str, repeats: int, reuse: bool) -> None:
    from tests.benchmarks.history import bench_history

    problem = check_postgres(os.environ["DATABASE_URL"])
    if problem:
        sys.exit(f"bench: {problem}")
    small, large = (int(size) for size in sizes.split(","))
    bench_history(
        small=small,
        large=large,
        repeats=repeats,
        admin_database=str(connection.settings_dict["NAME"]),
        reuse=reuse,
    )


def bench_recovery_main(*, pending: int) -> None:
    from tests.benchmarks.recovery import bench_recovery, bench_recovery_report

    problem = check_postgres(os.environ["DATABASE_URL"])
    if problem:
        sys.exit(f"bench: {problem}")
    bench_recovery_report(bench_recovery(pending=pending))


def bench_bls(signers: int) -> None:
    from bls import aggregate_g1, aggregate_g2, keypair_from_seed, verify

    message = bytes(range(32))
    keys = [keypair_from_seed("bench", i) for i in range(signers)]
    signatures = [k.sign(message) for k in keys]
    one_by_one = timed(
        lambda: all(
            verify(public_key_g2=k.public_key_g2, message=message, signature=s)
            for k, s in zip(keys, signatures, strict=True)
        )
    )
    aggregated = timed(
        lambda: verify(
            public_key_g2=aggregate_g2(k.public_key_g2 for k in keys),
            message=message,
            signature=aggregate_g1(signatures),
        )
    )
    print(f"bls verify of {signers} signatures of one batch (py-ecc)")
    print(f"  one pairing check each: {one_by_one:.2f} s; one aggregated check: {aggregated:.2f} s")
    print(f"  ratio: {one_by_one / aggregated:.1f}x faster aggregated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=10_000, help="NewBatchV3 logs to ingest (default 10000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--signers", type=int, default=8)
    parser.add_argument(
        "--only",
        choices=["ingest", "intake", "wire", "bls", "live", "flood", "recovery", "history"],
        default=None,
    )
    parser.add_argument("--operators", type=int, default=20, help="operators signing each batch (intake)")
    parser.add_argument("--batches", type=int, default=100, help="batches to sign (intake)")
    parser.add_argument("--backends", default="pyrevm,py-ecc", help="pairing backends to measure (intake)")
    parser.add_argument(
        "--live-samples",
        type=int,
        default=20,
        help="operators signing one batch, each timed to the browser (live)",
    )
    parser.add_argument(
        "--recovery-batches", type=int, default=20, help="batches pending at the aggregator crash (recovery)"
    )
    parser.add_argument(
        "--history-batches",
        default="10000,1000000",
        help="the two history sizes compared (history; default 10000,1000000)",
    )
    parser.add_argument("--history-repeats", type=int, default=5)
    parser.add_argument(
        "--history-reuse",
        action="store_true",
        help="keep a history database made by an earlier run when it has the size asked for (history)",
    )
    args = parser.parse_args()
    if args.only in (None, "ingest"):
        bench_ingest(args.logs, args.repeats)
    if args.only in (None, "intake"):
        bench_intake_main(operators=args.operators, batches=args.batches, backends=args.backends.split(","))
    if args.only in (None, "wire"):
        bench_wire_main(operators=args.operators, batches=args.batches)
    if args.only in (None, "live"):
        bench_live_main(samples=args.live_samples)
    if args.only in (None, "flood"):
        bench_flood_main(operators=args.operators)
    if args.only in (None, "recovery"):
        bench_recovery_main(pending=args.recovery_batches)
    if args.only in (None, "bls"):
        bench_bls(args.signers)
    if args.only in (None, "history"):
        bench_history_main(sizes=args.history_batches, repeats=args.history_repeats, reuse=args.history_reuse)


if __name__ == "__main__":
    main()
