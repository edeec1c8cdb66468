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
    from server.augment import augment
    from server.backends import EmbeddedLLM
    from server.engines import make_backend
    from server.prompts import augmentation_prompt
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.experiment import prepare_data
    from tasks import load_lamp_dir

    cfg = load_config(args.config or DEFAULT_CONFIG, args.set or [])
    variants = _parse_variants(cfg, args.vs, args.repeats)  # before minutes of loading
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
        items, report = augment(llm, data.task, seeds, cfg.augment, cfg.experiment.seed)
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
           "sampler": cfg.cloud.sampler, "dtype": getattr(llm, "dtype", cfg.cloud.dtype),
           "load_seconds": round(load, 2), **runs[sizes[0]],
           "by_batch_size": runs if len(sizes) > 1 else None}
    if args.vs:
        out["vs"] = _variants(llm, data.task, seeds, cfg, variants, args.repeats)
    if isinstance(llm, EmbeddedLLM) and not args.no_bounds:
        from simulation.bench.cloud_bounds import split as time_split

        first = users[0]
        prompts = [augmentation_prompt(data.task, seeds[first], c)
                   for c in range(min(cfg.augment.n, cfg.cloud.batch_size))]
        out["bounds"] = time_split(llm, prompts, cfg.cloud.max_new_tokens)
    print(json.dumps(out))
    return 0


def _parse_variants(cfg, items: list[str], repeats: int) -> dict:
    """{name: AugmentSettings} for `--vs augment.KEY=VALUE` items, the configured first."""
    from simulation.config import parse_value

    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    variants = {"configured": cfg.augment}
    for item in items:
        key, sep, value = item.partition("=")
        name = key.removeprefix("augment.")
        if not sep or not key.startswith("augment.") or \
                name not in {f.name for f in dataclasses.fields(cfg.augment)}:
            raise ValueError(f"--vs '{item}': must be augment.FIELD=VALUE, a field of [augment]")
        variants[item] = dataclasses.replace(cfg.augment, **{name: parse_value(value)})
    return variants


def _variants(llm, task, seeds, cfg, variants: dict, repeats: int) -> dict:
    """The cloud's time for augmentation variants (e.g. consistency on) against the
    configured augmentation, alternated `repeats` times in one process (after one warm-up
    call), as medians and ratios to the configured one."""
    import statistics

    from server.augment import augment

    first = next(iter(seeds))
    augment(llm, task, {first: seeds[first]}, dataclasses.replace(cfg.augment, n=1),
            cfg.experiment.seed)  # warm-up: the first call pays one-off costs
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    counts = {}
    for _ in range(repeats):
        for name, settings in variants.items():
            _, report = augment(llm, task, seeds, settings, cfg.experiment.seed)
            seconds[name].append(report.seconds)
            counts[name] = report.totals()
    base = statistics.median(seconds["configured"])
    return {name: {"augment_seconds": round(statistics.median(t), 2),
                   "ratio_to_configured": round(statistics.median(t) / base, 3),
                   "kept": counts[name]["kept"], "generated": counts[name]["generated"]}
            for name, t in seconds.items()}
