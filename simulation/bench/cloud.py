"""`cdcda bench cloud`: augmentation throughput of the configured cloud backend."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    """Augmentation throughput of the configured cloud backend over N users' seeds."""
    from clients.seeds import select_seeds
    from server.augment import augment
    from server.backends import make_backend
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.experiment import prepare_data
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
