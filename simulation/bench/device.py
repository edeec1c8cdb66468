"""`cdcda bench device`: train and evaluate users one at a time on the device path."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    """Train + evaluate N users one at a time on the device path (no Flower): the figures
    a device would see (load, seconds per step and per user, tokens/s, peak memory)."""
    from clients import device
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.experiment import prepare_data

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
