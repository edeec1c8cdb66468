"""The `cdcda` command line: data, eval, models, run, summary, report, bench.

This module only parses and dispatches: what each command does is in simulation/commands.py.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from rich.logging import RichHandler
from rich.markup import escape

from simulation import commands
from simulation.console import console, describe
from simulation.running.logs import OUR_PACKAGES, ConsoleFilter

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the run failed for room, not for its input


def _data(sub: argparse._SubParsersAction) -> None:
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
    mk.add_argument("--heterogeneity", type=float, default=1.0,
                    help="0 = one preference for everyone ... 1 = each user their own")
    mk.set_defaults(fn=commands.data_make)


def _eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="score predictions; prints metrics as JSON")
    ev.add_argument("--task", required=True, help="LaMP-1 ... LaMP-7")
    ev.add_argument("--golds", type=Path,
                    help="LaMP outputs file ({task, golds: [{id, output}]}); leave it out "
                         "to score a run's own predictions, which carry their golds")
    ev.add_argument("--preds", required=True, type=Path,
                    help="LaMP outputs file, or a run's DIR/predictions/<method>/ (or a file "
                         "of it)")
    ev.add_argument("--parse", action="store_true",
                    help="canonicalise model chatter first, as a run does (default: score the"
                         " stripped strings exactly as LaMP's official script does)")
    ev.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # deprecated; warns
    ev.set_defaults(fn=commands.evaluate)


def _models(sub: argparse._SubParsersAction) -> None:
    mo = sub.add_parser("models", help="list bundled models or convert them to the cache")
    mo.add_argument("action", choices=["list", "prepare"])
    mo.add_argument("names", nargs="*")
    mo.set_defaults(fn=commands.models)


def _run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run an experiment (Flower simulation on Ray); resumable")
    r.add_argument("--config", type=Path, help="TOML experiment (default: configs/default.toml)")
    r.add_argument("--out", type=Path, required=True, help="run directory (reused to resume)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set device.train.steps=16")
    r.add_argument("--ray-address",
                   help="join a Ray cluster: 'auto' (the one `ray start` started on this "
                        "machine) or the head's HOST:PORT; --out must then be on a "
                        "filesystem every node mounts")
    r.set_defaults(fn=commands.run, computes=True)

    s = sub.add_parser("summary", help="rebuild DIR/summary.json from what DIR stores")
    s.add_argument("dir", type=Path, help="a run directory")
    s.set_defaults(fn=commands.summary)

    rp = sub.add_parser("report", help="rebuild DIR/report.md and its plots from summary.json "
                                       "(a sweep's DIR: sweep.md, sweep.csv and plots)")
    rp.add_argument("dir", type=Path, help="a run directory holding summary.json, or a sweep's")
    rp.set_defaults(fn=commands.report)

    sw = sub.add_parser("sweep", help="one run per point of a grid of config values; "
                                      "resumable; sweep.md, sweep.csv and plots")
    sw.add_argument("--config", type=Path, help="TOML experiment (its [sweep] grid too)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a swept config value, e.g. --grid data.heterogeneity=0,0.5,1 "
                         "(repeat for a product; replaces the config's grid for that key)")
    sw.add_argument("--out", type=Path, required=True,
                    help="sweep directory: one run directory per point under points/")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value at every point")
    sw.set_defaults(fn=commands.sweep, computes=True)


def _bench(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="measure and print JSON figures")
    b.set_defaults(computes=True)  # every bench subcommand
    bsub = b.add_subparsers(dest="what", required=True)
    for name, fn, users, doc in (
            ("device", commands.bench_device, 2,
             "Train + evaluate N users one at a time on the device path (no Flower): the "
             "figures a device would see (load, seconds per step and per user, tokens/s, "
             "peak memory)."),
            ("cloud", commands.bench_cloud, 4,
             "Augmentation throughput of the configured cloud backend over N users' seeds, "
             "and for the embedded model prefill, decode and sampling against the "
             "machine's matmul ceiling and memory bandwidth.")):
        p = bsub.add_parser(name, help=doc)
        p.add_argument("--config", type=Path)
        p.add_argument("--set", action="append", metavar="KEY=VALUE")
        p.add_argument("--users", type=int, default=users)
        if name == "device":
            p.add_argument("--out", type=Path, help="keep adapters here (default: a temp dir)")
        if name == "cloud":
            p.add_argument("--batch-sizes", default="", metavar="B1,B2,...",
                           help="cloud.batch_size values to run in turn (default: the config's)")
            p.add_argument("--no-bounds", action="store_true",
                           help="skip the prefill/decode/sampling split and its bounds")
            p.add_argument("--vs", action="append", default=[], metavar="'KEY=VALUE ...'",
                           help="also time augmentation with these space-separated augment. "
                                "or cloud. settings (repeatable), alternated with the "
                                "configured ones: medians and ratios")
            p.add_argument("--repeats", type=int, default=3,
                           help="rounds of the --vs alternation (default 3)")
        p.set_defaults(fn=fn)

    sim = bsub.add_parser("sim", help="orchestration overhead per user per round: Flower's "
                                      "engine on Ray with the tiny model")
    sim.add_argument("--users", type=int, default=100)
    sim.add_argument("--cohort", type=int, default=None,
                     help="users per SuperNode (runtime.cohort; default: the config's)")
    sim.add_argument("--rounds", type=int, default=3, help="no-work rounds after discovery")
    sim.add_argument("--config", type=Path, help="TOML experiment (default: configs/tiny.toml)")
    sim.add_argument("--set", action="append", metavar="KEY=VALUE")
    sim.add_argument("--out", type=Path, help="keep the run directory here (default: temp)")
    sim.set_defaults(fn=commands.bench_sim)

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
    train.set_defaults(fn=commands.bench_train)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cdcda", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_data, _eval, _models, _run, _bench):
        add(sub)
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
    if getattr(args, "computes", False):  # before Ray's and our threads make arenas
        from models.allocator import keep_freed_memory

        keep_freed_memory()
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # Ctrl-C outside a run's own handling (e.g. writing a report)
        console.print("[yellow]stopped by SIGINT[/yellow]: whatever was stored is kept; "
                      "rerun the same command to resume")
        return 130
    except OSError as err:
        logging.getLogger(__name__).debug("traceback", exc_info=True)  # shown with -v
        if err.errno in DISK_FULL:  # not bad input: the machine ran out of room
            console.print(f"[red]error:[/red] {escape(describe(err))}: what was stored is "
                          "kept; free space and rerun the same command to resume",
                          soft_wrap=True)
            return 1
        console.print(f"[red]error:[/red] {escape(describe(err))}", soft_wrap=True)
        return 2
    except (ValueError, RuntimeError) as err:
        logging.getLogger(__name__).debug("traceback", exc_info=True)  # shown with -v
        # soft_wrap: a long path stays one piece; escape: file data may hold "[/x]"
        console.print(f"[red]error:[/red] {escape(describe(err))}", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
