"""What each `cdcda` command does (simulation/cli.py parses and dispatches to these).

Heavy imports (torch, Flower, Ray) happen inside the command that needs them, so
`cdcda --help` and `cdcda eval` start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from rich.markup import escape

from simulation.console import console

# exit codes: 0 every method has results (failures, if any, are listed); 1 the run
# finished but failed (a method with no successful user, or the cloud produced nothing);
# 2 bad input; 130 / 143 stopped by SIGINT / SIGTERM (resumable).
EXIT_FAILED = 1


def _print_summary(summary: dict, console) -> int:
    """The method table, the run's problems and warnings; returns the exit code."""
    from rich.table import Table

    from simulation.results.report import pipeline_lines

    table = Table(title=escape(f"{summary['task']}: {len(summary.get('users', []))} users"))
    table.add_column("method")
    first = next(iter(summary["methods"].values()), {"metrics": {}})["metrics"]
    names = [k for k in first if k in ("accuracy", "f1", "mae", "rmse", "rouge-1", "rouge-L")]
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("users ok/failed", justify="right")
    table.add_column("bytes up/down, all users", justify="right")
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
        for line in pipeline_lines(summary["scale"]):
            console.print(line, soft_wrap=True)
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")
    for p in summary.get("problems", []):
        console.print(f"[red]problem:[/red] {escape(p)}")
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


def run(args: argparse.Namespace) -> int:
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.runner import run as run_experiment
    from simulation.running.signals import Interrupted, exit_if_stuck, set_resume_hint

    overrides = list(args.set or [])
    if args.ray_address:
        overrides.append(f"runtime.ray_address={args.ray_address}")
    cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
    out = Path(args.out).resolve()
    resume = f"cdcda run --out {out} --config {out / 'config.toml'}"
    set_resume_hint(resume)
    start = time.perf_counter()
    try:
        summary = run_experiment(cfg, out, console=console, verbose=args.verbose)
    except Interrupted as stop:
        console.print(f"[yellow]stopped by {stop}[/yellow]: finished users' results and "
                      f"adapters are kept in {escape(str(out))}.\nresume with: "
                      f"{escape(resume)}")
        exit_if_stuck(stop.exit_code)
        return stop.exit_code
    code = _print_summary(summary, console)
    if summary.get("users"):
        from simulation.results.report import write_report

        try:
            console.print(f"report: {escape(str(write_report(out)))}")
        except (ValueError, OSError) as err:  # the run's results stand; say what broke
            console.print(f"[red]the report could not be written:[/red] {escape(str(err))}")
            code = code or EXIT_FAILED
    verdict = {"ok": "done", "partial": "done, with failures"}.get(summary["status"], "FAILED")
    console.print(f"{verdict} in {time.perf_counter() - start:.0f} s; results in "
                  f"{escape(str(out / 'summary.json'))}")
    print(json.dumps({"summary": str(out / "summary.json"), "status": summary["status"]}))
    return code


def summary(args: argparse.Namespace) -> int:
    """Rebuild summary.json from a run directory's stored state (runs nothing)."""
    from simulation.config import load_config
    from simulation.running.experiment import write_summary

    run_dir = Path(args.dir).resolve()
    config = run_dir / "config.toml"
    if not config.is_file():
        raise ValueError(f"{run_dir} holds no run (no config.toml)")
    summary = write_summary(load_config(config), run_dir)
    code = _print_summary(summary, console)
    print(json.dumps({"summary": str(run_dir / "summary.json"), "status": summary["status"]}))
    return code


def report(args: argparse.Namespace) -> int:
    """Rebuild DIR/report.md and its plots from DIR/summary.json (runs nothing); for a
    sweep's DIR, sweep.md, sweep.csv and the sweep's plots from its points' summaries."""
    if (Path(args.dir) / "sweep.json").is_file():
        from simulation.results.sweep import write_sweep_report

        path = write_sweep_report(Path(args.dir).resolve())
        console.print(f"sweep report in {escape(str(path))}")
        print(json.dumps({"report": str(path)}))
        return 0
    from simulation.results.report import write_report

    path = write_report(Path(args.dir).resolve())
    console.print(f"report in {escape(str(path))}")
    print(json.dumps({"report": str(path)}))
    return 0


def sweep(args: argparse.Namespace) -> int:
    """Every point of the grid, each a resumable run; then the sweep's report."""
    from simulation.results.sweep import write_sweep_report
    from simulation.running.signals import Interrupted, exit_if_stuck
    from simulation.running.sweep import run_sweep

    out = Path(args.out).resolve()
    config = args.config
    start = time.perf_counter()
    try:
        statuses = run_sweep(config, list(args.set or []), list(args.grid), out, console,
                             args.verbose)
    except Interrupted as stop:
        console.print(f"[yellow]stopped by {stop}[/yellow]: finished points and users are "
                      f"kept in {escape(str(out))}.\nresume with the same command.")
        exit_if_stuck(stop.exit_code)
        return stop.exit_code
    code = 0
    for name, status in statuses.items():
        if status not in ("ok", "partial"):
            console.print(f"[red]point {escape(name)}:[/red] {escape(status)}")
            code = EXIT_FAILED
    try:
        console.print(f"sweep report: {escape(str(write_sweep_report(out)))}")
    except (ValueError, OSError) as err:
        console.print(f"[red]the sweep report could not be written:[/red] "
                      f"{escape(str(err))}")
        code = code or EXIT_FAILED
    ok = sum(s in ("ok", "partial") for s in statuses.values())
    console.print(f"{ok} of {len(statuses)} points done in {time.perf_counter() - start:.0f} "
                  f"s; results in {escape(str(out / 'sweep.md'))}")
    print(json.dumps({"sweep": str(out / "sweep.md"), "points": statuses}))
    return code


def data_make(args: argparse.Namespace) -> int:
    from tasks.benchmark import make_benchmark

    meta = make_benchmark(args.task, args.users, args.seed, args.out, args.profile_size,
                          args.queries, args.noise, args.heterogeneity)
    console.print(f"wrote {meta['users']} users ({meta['task']} format) to {args.out}")
    print(json.dumps(meta))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from tasks.catalog import get_task
    from tasks.evaluate import score_files, score_run_predictions

    try:
        get_task(args.task)
    except ValueError as err:
        raise ValueError(f"--task: {err}") from err
    if args.raw:
        logging.getLogger(__name__).warning(
            "--raw does nothing now: LaMP's official semantics are the default; "
            "--parse opts into the lenient parser")
    if args.golds is None:  # a run's own predictions carry their golds
        print(json.dumps(score_run_predictions(args.task, args.preds, parse=args.parse)))
        return 0
    print(json.dumps(score_files(args.task, args.golds, args.preds, parse=args.parse)))
    return 0


def models(args: argparse.Namespace) -> int:
    from models import NAMED_MODELS, load_model

    if args.action == "list":
        for name, m in NAMED_MODELS.items():
            print(f"{name}\t{m.description}")
        return 0
    out = {}
    for name in args.names or list(NAMED_MODELS):
        loaded = load_model(name)
        out[name] = {"load_seconds": round(loaded.load_seconds, 2),
                     "parameters": sum(p.numel() for p in loaded.model.parameters())}
        console.print(f"{name}: ready in {loaded.load_seconds:.1f} s")
    print(json.dumps(out))
    return 0


def bench_device(args: argparse.Namespace) -> int:
    from simulation.bench.device import main

    return main(args)


def bench_cloud(args: argparse.Namespace) -> int:
    from simulation.bench.cloud import main

    return main(args)


def bench_sim(args: argparse.Namespace) -> int:
    from simulation.bench.sim import main

    return main(args)


def bench_train(args: argparse.Namespace) -> int:
    from simulation.bench.train import main

    return main(args)
