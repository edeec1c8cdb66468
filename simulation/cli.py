"""The `cdcda` command line: data, eval, models, run, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from simulation.logs import OUR_PACKAGES, ConsoleFilter

console = Console(stderr=True)


def _data_make(args: argparse.Namespace) -> int:
    from tasks.benchmark import make_benchmark

    meta = make_benchmark(args.task, args.users, args.seed, args.out, args.profile_size,
                          args.queries, args.noise)
    console.print(f"wrote {meta['users']} users ({meta['task']} format) to {args.out}")
    print(json.dumps(meta))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tasks.catalog import get_task
    from tasks.evaluate import score_files

    try:
        get_task(args.task)
    except ValueError as err:
        raise ValueError(f"--task: {err}") from err
    if args.raw:
        logging.getLogger(__name__).warning(
            "--raw does nothing now: LaMP's official semantics are the default; "
            "--parse opts into the lenient parser")
    print(json.dumps(score_files(args.task, args.golds, args.preds, parse=args.parse)))
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
    mk.add_argument("--task", required=True,
                    help="tags | rating | headline | citation | title | tweet")
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
    ev.add_argument("--parse", action="store_true",
                    help="canonicalise model chatter first, as a run does (default: score the"
                         " stripped strings exactly as LaMP's official script does)")
    ev.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # deprecated; warns
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
    handler = RichHandler(console=console, show_path=False)
    handler.addFilter(ConsoleFilter(args.verbose))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, RichHandler)]:
        root.removeHandler(old)  # a previous main() in this process (tests): replace ours
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    level = logging.DEBUG if args.verbose else logging.INFO
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(level)
    logging.getLogger("flwr").setLevel(level)  # Flower logs its engine at DEBUG by default
    try:
        return args.fn(args)
    except (ValueError, OSError, RuntimeError) as err:
        logging.getLogger(__name__).debug("traceback", exc_info=True)  # shown with -v
        # soft_wrap: a long path stays one piece; escape: file data may hold "[/x]"
        console.print(f"[red]error:[/red] {escape(_describe(err))}", soft_wrap=True)
        return 2


def _describe(err: Exception) -> str:
    """An error's message; an OSError's names its path(s) first, as our own errors do."""
    if isinstance(err, OSError) and err.filename is not None:
        paths = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return f"{paths}: {err.strerror or err}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
