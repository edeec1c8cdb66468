"""`cdcda run`, `summary`, `report`: one experiment through Flower on Ray; its summary, report."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# exit codes: 0 every method has results (failures, if any, are listed); 1 the run
# finished but failed (a method with no successful user, or the cloud produced nothing);
# 2 bad input; 130 / 143 stopped by SIGINT / SIGTERM (resumable).
EXIT_FAILED = 1


def _print_summary(summary: dict, console) -> int:
    """The method table, the run's problems and warnings; returns the exit code."""
    from rich.table import Table

    table = Table(title=f"{summary['task']}: {len(summary.get('users', []))} users")
    table.add_column("method")
    first = next(iter(summary["methods"].values()), {"metrics": {}})["metrics"]
    names = [k for k in first if k in ("accuracy", "f1", "mae", "rmse", "rouge-1", "rouge-L")]
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("users ok/failed", justify="right")
    table.add_column("bytes up/down", justify="right")
    for method, res in summary["methods"].items():
        comm = summary["communication"].get(method, {})
        failed = len(res["failures"])
        style = "red" if res["status"] == "failed" else ("yellow" if failed else None)
        table.add_row(method, *(f"{res['metrics'].get(n, float('nan')):.4f}" for n in names),
                      f"{len(res['per_user'])}/{failed}",
                      f"{comm.get('bytes_up', 0)}/{comm.get('bytes_down', 0)}", style=style)
    console.print(table)
    if summary.get("scale"):
        console.print(_scale_line(summary["scale"]), soft_wrap=True)
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")
    for p in summary.get("problems", []):
        console.print(f"[red]problem:[/red] {p}")
    return EXIT_FAILED if summary["status"] in ("failed", "incomplete") else 0


def _scale_line(sc: dict) -> str:
    """Time and memory of the run (all sessions), one line under the table."""
    mem = sc["peak_memory_mb"]
    return (f"{sc['users']} users in {sc['wall_seconds']:.0f} s "
            f"({sc['seconds_per_user']:.2f} s/user; discovery "
            f"{sc['discovery_ms_per_user']:.1f} ms/user); peak memory: driver "
            f"{mem['driver']:.0f} MiB, workers {mem['workers']:.0f} MiB "
            f"({mem['worker_processes']} processes, largest {mem['worker_max']:.0f}), "
            f"all processes {mem['all']:.0f} MiB")


def _run(args: argparse.Namespace) -> int:
    from simulation.cli import console
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.runner import run
    from simulation.signals import Interrupted, exit_if_stuck

    overrides = list(args.set or [])
    if args.ray_address:
        overrides.append(f"runtime.ray_address={args.ray_address}")
    cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
    out = Path(args.out).resolve()
    start = time.perf_counter()
    try:
        summary = run(cfg, out, console=console, verbose=args.verbose)
    except Interrupted as stop:
        console.print(f"[yellow]stopped by {stop}[/yellow]: finished users' results and "
                      f"adapters are kept in {out}.\nresume with: cdcda run --out {out} "
                      f"--config {out / 'config.toml'}")
        exit_if_stuck(stop.exit_code)
        return stop.exit_code
    code = _print_summary(summary, console)
    if summary.get("users"):
        from simulation.report import write_report

        try:
            console.print(f"report: {write_report(out)}")
        except (ValueError, OSError) as err:  # the run's results stand; say what broke
            console.print(f"[red]the report could not be written:[/red] {err}")
            code = code or EXIT_FAILED
    verdict = {"ok": "done", "partial": "done, with failures"}.get(summary["status"], "FAILED")
    console.print(f"{verdict} in {time.perf_counter() - start:.0f} s; results in "
                  f"{out / 'summary.json'}")
    print(json.dumps({"summary": str(out / "summary.json"), "status": summary["status"]}))
    return code


def _summary(args: argparse.Namespace) -> int:
    """Rebuild summary.json from a run directory's stored state (runs nothing)."""
    from simulation.cli import console
    from simulation.config import load_config
    from simulation.experiment import write_summary

    run_dir = Path(args.dir).resolve()
    config = run_dir / "config.toml"
    if not config.is_file():
        raise ValueError(f"{run_dir} holds no run (no config.toml)")
    summary = write_summary(load_config(config), run_dir)
    code = _print_summary(summary, console)
    print(json.dumps({"summary": str(run_dir / "summary.json"), "status": summary["status"]}))
    return code


def _report(args: argparse.Namespace) -> int:
    """Rebuild DIR/report.md and its plots from DIR/summary.json (runs nothing)."""
    from simulation.cli import console
    from simulation.report import write_report

    path = write_report(Path(args.dir).resolve())
    console.print(f"report in {path}")
    print(json.dumps({"report": str(path)}))
    return 0


def add_run_and_bench(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run an experiment (Flower simulation on Ray); resumable")
    r.add_argument("--config", type=Path, help="TOML experiment (default: configs/default.toml)")
    r.add_argument("--out", type=Path, required=True, help="run directory (reused to resume)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set device.train.epochs=2")
    r.add_argument("--ray-address",
                   help="join a Ray cluster: 'auto' (the one `ray start` started on this "
                        "machine) or the head's HOST:PORT; --out must then be on a "
                        "filesystem every node mounts")
    r.set_defaults(fn=_run)

    s = sub.add_parser("summary", help="rebuild DIR/summary.json from what DIR stores")
    s.add_argument("dir", type=Path, help="a run directory")
    s.set_defaults(fn=_summary)

    rp = sub.add_parser("report", help="rebuild DIR/report.md and its plots from summary.json")
    rp.add_argument("dir", type=Path, help="a run directory holding summary.json")
    rp.set_defaults(fn=_report)

    from simulation.bench import add_bench

    _add_more_benches(add_bench(sub))


def _bench_sim(args: argparse.Namespace) -> int:
    from simulation.bench_sim import main

    return main(args)


def _bench_train(args: argparse.Namespace) -> int:
    from simulation.bench_train import main

    return main(args)


def _add_more_benches(bsub: argparse._SubParsersAction) -> None:
    """`bench sim` (Flower on Ray overhead per user) and `bench train` (cohort training)."""
    sim = bsub.add_parser("sim", help="orchestration overhead per user per round: Flower's "
                                      "engine on Ray with the tiny model")
    sim.add_argument("--users", type=int, default=100)
    sim.add_argument("--cohort", type=int, default=None,
                     help="users per SuperNode (runtime.cohort; default: the config's)")
    sim.add_argument("--rounds", type=int, default=3, help="no-work rounds after discovery")
    sim.add_argument("--config", type=Path, help="TOML experiment (default: configs/tiny.toml)")
    sim.add_argument("--set", action="append", metavar="KEY=VALUE")
    sim.add_argument("--out", type=Path, help="keep the run directory here (default: temp)")
    sim.set_defaults(fn=_bench_sim)

    train = bsub.add_parser("train", help="cohort training throughput (K users per base)")
    train.add_argument("--users", type=int, default=8)
    train.add_argument("--cohort", type=int, default=16, help="users trained together")
    train.add_argument("--config", type=Path)
    train.add_argument("--set", action="append", metavar="KEY=VALUE")
    train.add_argument("--out", type=Path)
    train.add_argument("--examples", type=int, default=0,
                       help="examples per user (cycling the user's own; 0 = as they are)")
    train.add_argument("--repeat", type=int, default=2,
                       help="repetitions per path, alternating order; the fastest counts")
    train.set_defaults(fn=_bench_train)
