"""The `cdcda` command line: data, eval, models, run, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)
OUR_PACKAGES = ("tasks", "models", "clients", "server", "strategies", "simulation")


def _data_make(args: argparse.Namespace) -> int:
    from tasks.benchmark import make_benchmark

    meta = make_benchmark(args.task, args.users, args.seed, args.out, args.profile_size,
                          args.queries, args.noise)
    console.print(f"wrote {meta['users']} users ({meta['task']} format) to {args.out}")
    print(json.dumps(meta))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tasks.evaluate import score_files

    print(json.dumps(score_files(args.task, args.golds, args.preds, parse=not args.raw)))
    return 0


def _models(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cdcda", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="bundled offline benchmark")
    dsub = data.add_subparsers(dest="action", required=True)
    mk = dsub.add_parser("make", help="write a benchmark in LaMP format")
    mk.add_argument("--task", required=True, help="tags | rating | headline")
    mk.add_argument("--users", type=int, required=True)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--out", required=True, type=Path)
    mk.add_argument("--profile-size", type=int, default=8, help="real examples per user")
    mk.add_argument("--queries", type=int, default=2, help="held-out queries per user")
    mk.add_argument("--noise", type=float, default=0.0, help="share of golds flipped")
    mk.set_defaults(fn=_data_make)

    ev = sub.add_parser("eval", help="score LaMP-format predictions; prints metrics as JSON")
    ev.add_argument("--task", required=True, help="LaMP-1 ... LaMP-7")
    ev.add_argument("--golds", required=True, type=Path)
    ev.add_argument("--preds", required=True, type=Path)
    ev.add_argument("--raw", action="store_true",
                    help="compare strings as given (LaMP's official script) without parsing")
    ev.set_defaults(fn=_eval)

    mo = sub.add_parser("models", help="list bundled models or convert them to the cache")
    mo.add_argument("action", choices=["list", "prepare"])
    mo.add_argument("names", nargs="*")
    mo.set_defaults(fn=_models)

    from simulation import commands

    commands.add_run_and_bench(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    level = logging.DEBUG if args.verbose else logging.INFO
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(level)
    logging.getLogger("flwr").setLevel(level)  # Flower logs its engine at DEBUG by default
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
