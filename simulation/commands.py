"""`cdcda run`: one experiment through the Flower simulation engine on Ray."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from simulation.cli import console
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.runner import run

    overrides = list(args.set or [])
    if args.ray_address:
        overrides.append(f"runtime.ray_address={args.ray_address}")
    cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
    start = time.perf_counter()
    summary = run(cfg, Path(args.out), console=console)
    table = Table(title=f"{summary['task']}: {len(summary.get('users', []))} users")
    table.add_column("method")
    names = [k for k in next(iter(summary["methods"].values()))["metrics"]
             if k in ("accuracy", "f1", "mae", "rmse", "rouge-1", "rouge-L")]
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("bytes up/down", justify="right")
    for method, res in summary["methods"].items():
        comm = summary["communication"].get(method, {})
        table.add_row(method, *(f"{res['metrics'].get(n, float('nan')):.4f}" for n in names),
                      f"{comm.get('bytes_up', 0)}/{comm.get('bytes_down', 0)}")
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.0f} s; results in "
                  f"{Path(args.out).resolve() / 'summary.json'}")
    print(json.dumps({"summary": str(Path(args.out).resolve() / "summary.json")}))
    return 0


def add_run_and_bench(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run an experiment (Flower simulation on Ray); resumable")
    r.add_argument("--config", type=Path, help="TOML experiment (default: configs/default.toml)")
    r.add_argument("--out", type=Path, required=True, help="run directory (reused to resume)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set device.train.epochs=2")
    r.add_argument("--ray-address", help="Ray cluster address ('auto' after `ray start`)")
    r.set_defaults(fn=_run)

    from simulation.bench import add_bench

    add_bench(sub)
