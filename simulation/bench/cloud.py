"""`cdcda bench cloud`: augmentation throughput of the configured cloud backend, at
several batch sizes, and for the embedded backend where its time goes (prefill, decode,
sampling) against the machine's matmul ceiling and memory bandwidth."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    """Throughput over N users' seeds; JSON on stdout."""
    from clients.seeds import select_seeds
    from models.allocator import describe as allocator
    from server.augment import augment
    from server.backends import EmbeddedLLM
    from server.engines import make_backend
    from server.prompts import augmentation_prompt
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.experiment import prepare_data
    from tasks import load_lamp_dir

    cfg = load_config(args.config or DEFAULT_CONFIG, args.set or [])
    variants = _parse_variants(args, args.vs, args.repeats)  # before minutes of loading
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, split, task = prepare_data(cfg, Path(tmp))
        data = load_lamp_dir(data_dir, split, task)
    users = data.user_ids()[: args.users]
    seeds = {u: select_seeds(data.task, data.users[u].profile, cfg.device.seeds, i)
             for i, u in enumerate(users)}
    start = time.perf_counter()
    llm = make_backend(cfg.cloud)
    load = time.perf_counter() - start
    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else \
        [cfg.cloud.batch_size]
    runs = {}
    for size in sizes:  # a user's candidates are one group: batches are at most n
        if isinstance(llm, EmbeddedLLM):
            llm.settings = dataclasses.replace(llm.settings, batch_size=size)
        before = getattr(llm, "generated_tokens", 0)
        items, report = augment(llm, data.task, seeds, cfg.augment, cfg.experiment.seed,
                                together=_nodes(cfg, users))
        totals = report.totals()
        tokens = getattr(llm, "generated_tokens", 0) - before
        runs[size] = {
            "augment_seconds": round(report.seconds, 2),
            "candidates_per_second": round(totals["generated"] / report.seconds, 3),
            "generated_tokens": tokens,
            "generated_tokens_per_second": round(tokens / report.seconds, 1),
            "kept_share": round(totals["kept"] / max(totals["generated"], 1), 3),
            "counts": totals,
        }
    out = {"backend": llm.name, "task": task, "users": len(users), "n": cfg.augment.n,
           "batch_by": cfg.cloud.batch_by, "cohort": cfg.runtime.cohort,
           "sampler": cfg.cloud.sampler, "dtype": getattr(llm, "dtype", cfg.cloud.dtype),
           "allocator": allocator(), "load_seconds": round(load, 2), **runs[sizes[0]],
           "by_batch_size": runs if len(sizes) > 1 else None}
    if args.vs:
        out["vs"] = _variants(llm, data.task, seeds, cfg, variants, args.repeats)
        llm = make_backend(cfg.cloud)  # the configured model again, for the bounds
    if isinstance(llm, EmbeddedLLM) and not args.no_bounds:
        from simulation.bench.cloud_bounds import split as time_split

        # one batch as the configured cloud fills it: the first node's users' candidates
        # (batch_by = node) or the first user's, up to batch_size
        node = _nodes(cfg, users) or {users[0]: users[0]}
        prompts = [augmentation_prompt(data.task, seeds[u], c) for u in users
                   if node.get(u) == users[0] for c in range(cfg.augment.n)]
        out["bounds"] = time_split(llm, prompts[: cfg.cloud.batch_size],
                                   cfg.cloud.max_new_tokens)
    print(json.dumps(out))
    return 0


def _nodes(cfg, users: list[str]) -> dict[str, str] | None:
    """The run's SuperNodes over these users (runtime.cohort each, in order), named by
    their first user, when the cloud batches a node's users together."""
    if cfg.cloud.batch_by != "node":
        return None
    k = cfg.runtime.cohort
    return {u: users[i - i % k] for i, u in enumerate(users)}


def _parse_variants(args, items: list[str], repeats: int) -> dict:
    """{name: Config} for `--vs` items, the configured first. An item is one or more
    space-separated augment.KEY=VALUE or cloud.KEY=VALUE assignments on top of --set."""
    from simulation.config import DEFAULT_CONFIG, load_config

    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    base = list(args.set or [])
    variants = {"configured": load_config(args.config or DEFAULT_CONFIG, base)}
    for item in items:
        sets = item.split()
        bad = [a for a in sets if "=" not in a or not a.startswith(("augment.", "cloud."))]
        if not sets or bad:
            raise ValueError(f"--vs '{item}': must be augment.KEY=VALUE or cloud.KEY=VALUE "
                             "assignments, separated by spaces")
        try:
            variants[item] = load_config(args.config or DEFAULT_CONFIG, base + sets)
        except ValueError as err:
            raise ValueError(f"--vs '{item}': {err}") from None
    return variants


def _variants(llm, task, seeds, cfg, variants: dict, repeats: int) -> dict:
    """The cloud's time for variants (e.g. consistency on, the old arithmetic) against
    the configured settings, alternated `repeats` times in one process (after one warm-up
    call each), as medians and ratios to the configured one. A variant with other cloud
    settings gets its own backend (a model in another dtype is loaded again each time;
    loading is not counted)."""
    import statistics

    from server.augment import augment
    from server.engines import make_backend

    users = list(seeds)

    def backend(v):
        return llm if v.cloud == cfg.cloud else make_backend(v.cloud)

    def run(v, who):
        return augment(backend(v), task, {u: seeds[u] for u in who}, v.augment,
                       v.experiment.seed, together=_nodes(v, who))[1]

    for v in variants.values():  # warm-up: the first call pays one-off costs
        run(dataclasses.replace(v, augment=dataclasses.replace(v.augment, n=1)), users[:1])
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    counts = {}
    for _ in range(repeats):
        for name, v in variants.items():
            report = run(v, users)
            seconds[name].append(report.seconds)
            counts[name] = report.totals()
    base = statistics.median(seconds["configured"])
    return {name: {"augment_seconds": round(statistics.median(t), 2),
                   "candidates_per_second": round(counts[name]["generated"]
                                                  / statistics.median(t), 3),
                   "ratio_to_configured": round(statistics.median(t) / base, 3),
                   "kept": counts[name]["kept"], "generated": counts[name]["generated"]}
            for name, t in seconds.items()}
