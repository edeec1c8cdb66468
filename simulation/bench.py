"""`cdcda bench ...`: measured figures as JSON (device training, cloud augmentation, loads)."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _bench_device(args: argparse.Namespace) -> int:
    """Train + evaluate N users one at a time on the device path (no Flower): the figures
    a device would see (load, seconds per step and per user, tokens/s, peak memory)."""
    from clients import device
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.experiment import prepare_data

    cfg = load_config(args.config or DEFAULT_CONFIG, args.set or [])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.out) if args.out else Path(tmp)
        data_dir, split, task = prepare_data(cfg, run_dir)
        data = device.dataset(str(data_dir), split, task)
        start = time.perf_counter()
        rt = device.runtime(cfg.device)
        load = time.perf_counter() - start
        users = data.user_ids()[: args.users]
        rows = []
        for uid in users:
            zero = device.evaluate_user(rt, data.task, data.users[uid], cfg.device, "zero_shot",
                                        None, use_adapter=False)
            m = device.train_user(rt, data.task, data.users[uid], [], cfg.device, "local_real",
                                  run_dir, cfg.experiment.seed)
            rows.append((zero, m))
    per_user = [m["user-seconds"] for _, m in rows]
    out = {
        "model": cfg.device.model, "task": task, "users": len(rows),
        "model_load_seconds": round(load, 2),
        "seconds_per_user": round(statistics.mean(per_user), 2),
        "users_per_minute": round(60 / statistics.mean(per_user), 2),
        "seconds_per_step": round(statistics.mean(m["seconds-per-step"] for _, m in rows), 3),
        "train_tokens_per_second": round(sum(m["train-tokens"] for _, m in rows)
                                         / sum(m["train-seconds"] for _, m in rows), 1),
        "steps_per_user": statistics.mean(m["train-steps"] for _, m in rows),
        "ttft_seconds": round(statistics.mean(m["ttft-seconds"] for _, m in rows), 3),
        "generation_tokens_per_second": round(
            statistics.mean(m["tokens-per-second"] for _, m in rows), 1),
        "adapter_bytes": rows[0][1]["adapter-bytes"],
        "trainable_params": rows[0][1]["trainable-params"],
        "peak_memory_mb": round(max(m["peak-memory-mb"] for _, m in rows), 1),
        "first_loss": round(statistics.mean(m["first-loss"] for _, m in rows), 4),
        "last_loss": round(statistics.mean(m["last-loss"] for _, m in rows), 4),
        "zero_shot": {k: statistics.mean(z[k] for z, _ in rows) for k in data.task.metric_names},
        "local_real": {k: statistics.mean(m[k] for _, m in rows) for k in data.task.metric_names},
    }
    print(json.dumps(out))
    return 0


def _bench_cloud(args: argparse.Namespace) -> int:
    """Augmentation throughput of the configured cloud backend over N users' seeds."""
    from clients.seeds import select_seeds
    from server.augment import augment
    from server.backends import make_backend
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.experiment import prepare_data
    from tasks import load_lamp_dir

    cfg = load_config(args.config or DEFAULT_CONFIG, args.set or [])
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, split, task = prepare_data(cfg, Path(tmp))
        data = load_lamp_dir(data_dir, split, task)
    users = data.user_ids()[: args.users]
    seeds = {u: select_seeds(data.task, data.users[u].profile, cfg.device.seeds, i)
             for i, u in enumerate(users)}
    start = time.perf_counter()
    llm = make_backend(cfg.cloud)
    load = time.perf_counter() - start
    items, report = augment(llm, data.task, seeds, cfg.augment, cfg.experiment.seed)
    totals = report.totals()
    print(json.dumps({
        "backend": llm.name, "task": task, "users": len(users), "n": cfg.augment.n,
        "load_seconds": round(load, 2), "augment_seconds": round(report.seconds, 2),
        "candidates_per_second": round(totals["generated"] / report.seconds, 3),
        "generated_tokens": getattr(llm, "generated_tokens", None),
        "kept_share": round(totals["kept"] / max(totals["generated"], 1), 3),
        "counts": totals,
    }))
    return 0


def add_bench(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`bench device|cloud`; returns the subcommands, for the benches defined elsewhere."""
    b = sub.add_parser("bench", help="measure and print JSON figures")
    bsub = b.add_subparsers(dest="what", required=True)
    for name, fn, users in (("device", _bench_device, 2), ("cloud", _bench_cloud, 4)):
        p = bsub.add_parser(name, help=(fn.__doc__ or "").split("\n")[0])
        p.add_argument("--config", type=Path)
        p.add_argument("--set", action="append", metavar="KEY=VALUE")
        p.add_argument("--users", type=int, default=users)
        if name == "device":
            p.add_argument("--out", type=Path, help="keep adapters here (default: a temp dir)")
        p.set_defaults(fn=fn)
    return bsub
