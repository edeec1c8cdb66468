"""One experiment on a Flower Grid: data, cloud backend, every method, summary.json."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from flwr.serverapp import Grid

from server.augment import total_counts
from simulation.config import Config, dump_config, load_config
from strategies.accounting import Ledger
from strategies.cdcda import AugmentationStrategy, MethodResult
from tasks import get_task, load_lamp_dir
from tasks.benchmark import GENERATORS, make_benchmark
from tasks.files import write_json
from tasks.structured import to_mapping

log = logging.getLogger(__name__)
APP_ROOT = Path(__file__).resolve().parent.parent


def prepare_data(cfg: Config, run_dir: Path) -> tuple[Path, str, str]:
    """(folder, split, task) of the run's data; the benchmark is generated once per run dir."""
    users = cfg.experiment.users
    if cfg.data.source == "lamp":
        folder = Path(cfg.data.dir).expanduser()
        data = load_lamp_dir(folder, cfg.data.split, cfg.data.task)  # fails early, names file
        if len(data.users) < users:
            raise ValueError(f"data.dir {folder} has {len(data.users)} users but the "
                             f"simulation has {users} devices")
        return folder, cfg.data.split, data.task.name
    d = cfg.data
    folder = run_dir / "data" / d.benchmark
    want = {"generator": d.benchmark, "users": users, "seed": cfg.experiment.seed,
            "profile_size": d.profile_size, "queries": d.queries, "noise": d.noise}
    meta_path = folder / "benchmark.json"
    have = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if any(have.get(k) != v for k, v in want.items()):
        make_benchmark(d.benchmark, users, cfg.experiment.seed, folder,
                       d.profile_size, d.queries, d.noise)
    return folder, "dev", GENERATORS[d.benchmark][0]


def resolve_run(run_config: dict, env_run_dir: str | None) -> tuple[Config, Path]:
    """The run's config and folder: from `cdcda run` (env) or `flwr run .` (run_config)."""
    if env_run_dir:
        run_dir = Path(env_run_dir)
        return load_config(run_dir / "config.toml"), run_dir
    overrides = [o for o in str(run_config.get("overrides", "")).split(";") if o.strip()]
    config_file = str(run_config.get("config-file") or "")
    if config_file and not Path(config_file).is_absolute() and not Path(config_file).exists():
        config_file = str(APP_ROOT / config_file)  # `flwr run` starts us inside the app bundle
    cfg = load_config(config_file or None, overrides)
    run_dir = Path(str(run_config.get("out", "runs/flwr"))).resolve()
    dump_config(cfg, run_dir / "config.toml")
    return cfg, run_dir


class _Wandb:
    """Weights & Biases logging, offline unless the config asks for online."""

    def __init__(self, cfg: Config, run_dir: Path):
        self.run = None
        if cfg.runtime.wandb == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(project=cfg.runtime.wandb_project, name=cfg.experiment.name,
                                  dir=str(run_dir), mode=cfg.runtime.wandb,
                                  config=to_mapping(cfg), reinit="finish_previous")
        except Exception as err:  # logging must never take the experiment down
            log.warning("wandb disabled: %s", err)

    def log(self, data: dict) -> None:
        if self.run is not None:
            self.run.log(data)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def run_experiment(grid: Grid, cfg: Config, run_dir: Path, progress=None) -> dict:
    """Run every configured method over the same users; write summary.json as we go."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, split, task_name = prepare_data(cfg, run_dir)
    task = get_task(task_name)
    request = {
        "task": task_name, "data-dir": str(data_dir.resolve()), "split": split,
        "run-dir": str(run_dir.resolve()), "seed": cfg.experiment.seed,
        "device": json.dumps(to_mapping(cfg.device)),
    }
    ledger = Ledger()
    backend = {}

    def augmenter(seeds):
        from server.augment import augment
        from server.backends import make_backend

        if "llm" not in backend:
            backend["llm"] = make_backend(cfg.cloud)
        items, report = augment(backend["llm"], task, seeds, cfg.augment, cfg.experiment.seed)
        return items, report.per_user

    strategy = AugmentationStrategy(request, run_dir, augmenter, ledger, cfg.runtime.timeout,
                                    cfg.experiment.sample, cfg.experiment.seed, progress)
    wb = _Wandb(cfg, run_dir)
    summary: dict = {"experiment": cfg.experiment.name, "task": task_name,
                     "data": str(data_dir), "config": to_mapping(cfg), "methods": {},
                     "communication": {}}
    start = time.perf_counter()
    try:
        strategy.discover(grid, cfg.experiment.users)
        summary["users"] = sorted(strategy.node_user.values())
        for step, method in enumerate(cfg.experiment.methods):
            log.info("method %s: %d users", method, len(strategy.node_user))
            result: MethodResult = strategy.run_method(grid, method)
            metrics = result.metrics(task.metric_names)
            summary["methods"][method] = {"metrics": metrics, "per_user": result.per_user,
                                          "failures": result.failures,
                                          "seconds": result.seconds}
            summary["communication"][method] = {
                **ledger.summary(method),
                "projection_1000_users": ledger.projection(method, 1000),
            }
            summary["communication"]["setup"] = ledger.summary("setup")
            if method == "cdcda":
                counts = strategy.augment_counts
                summary["augmentation"] = {"total": total_counts(counts), "per_user": counts}
            summary["seconds"] = time.perf_counter() - start
            write_json(run_dir / "summary.json", summary)
            wb.log({f"{method}/{k}": v for k, v in metrics.items()} | {"method_index": step})
            log.info("method %s: %s", method,
                     {k: round(metrics[k], 4) for k in task.metric_names if k in metrics})
    finally:
        wb.finish()
    return summary

