"""`cdcda bench sim`: what Flower's simulation engine on Ray costs per user per round.

The tiny random model (configs/tiny.toml) on the path a run takes: Ray, Flower's engine,
the ClientApp and the strategy's exchange. The bench's ServerApp runs discovery, then
`--rounds` rounds of a message that does no work (`query.user` to every SuperNode through
the strategy's exchange), then one round of zero_shot (the smallest real work), and stores
the times; the driver and the Ray workers' memory is sampled throughout. JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from simulation.config import CONFIGS, Config, dump_config, load_config
from simulation.running.signals import should_stop
from tasks.files import check_folder, load_stored, write_json

TINY = CONFIGS / "tiny.toml"
BENCH_FILE = "bench.json"  # in the run dir: the rounds asked for, then the times measured
GOAL_MS = 2.0  # the overhead per user per round to report against (at 1,000 users)

app = ServerApp()


@app.main()
def bench_app(grid: Grid, context: Context) -> None:
    """Discovery, `rounds` no-work rounds, one zero_shot round; times to BENCH_FILE."""
    from simulation.running.experiment import build_strategy, resolve_run
    from simulation.running.server_app import RUN_DIR_ENV

    cfg, run_dir = resolve_run(dict(context.run_config), os.environ.get(RUN_DIR_ENV))
    out = load_stored(run_dir / BENCH_FILE) or {}
    strategy, _ = build_strategy(cfg, run_dir, should_stop)
    start = time.perf_counter()
    found = strategy.discover(grid, cfg.experiment.users)  # one entry per user
    out["discovery_seconds"] = time.perf_counter() - start
    out["nodes"] = len(list(grid.get_node_ids()))
    out["users_found"] = len(found)
    out["round_seconds"] = []
    for _ in range(int(out.get("rounds", 1))):
        start = time.perf_counter()
        strategy.discover(grid)  # query.user to every SuperNode: a round with no work
        out["round_seconds"].append(time.perf_counter() - start)
    result = strategy.run_method(grid, "zero_shot")
    out["zero_shot_seconds"] = result.seconds
    out["zero_shot_users"] = len(result.per_user)
    out["failures"] = len(result.failures)
    write_json(run_dir / BENCH_FILE, out)


def bench_config(args: argparse.Namespace) -> Config:
    """The tiny config (or --config) with --users, --cohort and zero_shot only."""
    overrides = [f"experiment.users={args.users}", "experiment.methods=['zero_shot']",
                 "experiment.sample=0", *(args.set or [])]
    if args.cohort is not None:
        overrides.append(f"runtime.cohort={args.cohort}")
    return load_config(args.config or TINY, overrides)


def main(args: argparse.Namespace) -> int:
    """Run the bench and print its JSON: overhead per user per round, times, memory."""
    import ray
    from flwr.simulation import run_simulation

    from clients.client_app import app as client_app
    from simulation.running.experiment import prepare_data
    from simulation.running.logs import run_log
    from simulation.running.measure import MemorySampler
    from simulation.running.runner import _resolve_models, _simulate
    from simulation.running.signals import Interrupted, stop_on_signals

    for option, value in (("--users", args.users), ("--rounds", args.rounds),
                          ("--cohort", 1 if args.cohort is None else args.cohort)):
        if value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    cfg = bench_config(args)
    with tempfile.TemporaryDirectory(prefix="cdcda-bench-sim-") as tmp:
        run_dir = Path(args.out or tmp).resolve()
        check_folder(run_dir)
        if (run_dir / "config.toml").exists():
            raise ValueError(f"--out {run_dir} holds a run already: use a new folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        prepare_data(cfg, run_dir)
        _resolve_models(cfg)
        dump_config(cfg, run_dir / "config.toml")
        write_json(run_dir / BENCH_FILE, {"rounds": args.rounds})
        start = time.perf_counter()
        try:
            with stop_on_signals(), run_log(run_dir), MemorySampler() as memory:
                _simulate(cfg, run_dir, None, False, ray, run_simulation, app, client_app)
        except Interrupted as stop:
            return stop.exit_code
        wall = time.perf_counter() - start
        got = load_stored(run_dir / BENCH_FILE) or {}
    if "zero_shot_seconds" not in got:
        raise RuntimeError(f"the bench's ServerApp did not finish (see {run_dir}/run.log)")
    print(json.dumps(report(cfg, got, wall, memory.peaks)))
    return 0


def report(cfg: Config, got: dict, wall: float, peaks: dict[str, float]) -> dict:
    """The bench's JSON from the ServerApp's times and the sampled memory peaks."""
    users = max(int(got["users_found"]), 1)
    rounds = got["round_seconds"]
    overhead = 1000 * statistics.mean(rounds) / users
    inside = got["discovery_seconds"] + sum(rounds) + got["zero_shot_seconds"]
    return {
        "users": cfg.experiment.users, "users_found": got["users_found"],
        "cohort": cfg.runtime.cohort, "nodes": got["nodes"],
        "rounds": len(rounds),
        "overhead_ms_per_user_round": round(overhead, 3),
        "round_ms_per_user": [round(1000 * r / users, 3) for r in rounds],
        "goal_ms_per_user_round": GOAL_MS, "meets_goal": overhead <= GOAL_MS,
        "discovery_seconds": round(got["discovery_seconds"], 2),
        "zero_shot_seconds": round(got["zero_shot_seconds"], 2),
        "zero_shot_ms_per_user": round(1000 * got["zero_shot_seconds"] / users, 3),
        "zero_shot_failures": got["failures"],
        "startup_and_teardown_seconds": round(wall - inside, 2),  # Ray, engine, shutdown
        "wall_seconds": round(wall, 2),
        "peak_memory_mb": {"driver": round(peaks["driver_mb"], 1),
                           "workers": round(peaks["workers_mb"], 1),
                           "worker_max": round(peaks["worker_max_mb"], 1),
                           "all": round(peaks["total_mb"], 1),
                           "worker_processes": int(peaks["workers"])},
        "versions": {"flwr": version("flwr"), "ray": version("ray"),
                     "python": platform.python_version()},
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
