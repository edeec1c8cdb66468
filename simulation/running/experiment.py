"""One experiment on a Flower Grid: data, cloud backend, every method, summary.json."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from simulation.config import APP_ROOT, Config, dump_config, load_config
from simulation.results.summary import CUTS_FILE, USERS_FILE, build_summary
from simulation.running.measure import MemorySampler, Timings
from strategies.accounting import LEDGER_FILE, Ledger
from strategies.failures import FAILURES_FILE, FailureLog
from strategies.methods import get_method
from strategies.methods.base import Services
from strategies.strategy import AugmentationStrategy, StrategySettings
from tasks import Task, get_task, load_lamp_dir
from tasks.benchmark import GENERATORS, make_benchmark
from tasks.budget import share
from tasks.files import load_stored, write_json
from tasks.lamp import check_experiment_data
from tasks.seeding import user_seed
from tasks.structured import to_mapping

log = logging.getLogger(__name__)


def data_location(cfg: Config, run_dir: Path) -> tuple[Path, str, str]:
    """(folder, split, task) of the run's data, without reading it."""
    if cfg.data.source == "lamp":
        return Path(cfg.data.dir).expanduser(), cfg.data.split, get_task(cfg.data.task).name
    return run_dir / "data" / cfg.data.benchmark, "dev", GENERATORS[cfg.data.benchmark][0]


_SAID: set[str] = set()  # data warnings this process has given: each is said once


def prepare_data(cfg: Config, run_dir: Path) -> tuple[Path, str, str]:
    """(folder, split, task) of the run's data; the benchmark is generated once per run dir."""
    users = cfg.experiment.users
    folder, split, task = data_location(cfg, run_dir)
    if cfg.data.source == "lamp":
        data = load_lamp_dir(folder, split, cfg.data.task)  # fails early, names file
        if len(data.users) < users:
            raise ValueError(f"data.dir {folder} has {len(data.users)} users but the "
                             f"simulation has {users} devices")
        trains = any(get_method(m).trains == "own" for m in cfg.experiment.methods)
        for warning in check_experiment_data(data, needs_golds=True, trains=trains):
            if warning not in _SAID:  # the CLI checks the data, then the ServerApp again
                _SAID.add(warning)
                log.warning("%s", warning)
        if data.cut:  # counted in the summary (data_info.texts_cut)
            write_json(run_dir / CUTS_FILE, {"texts_cut": len(data.cut), "cut": data.cut[:100]})
        return folder, split, data.task.name
    d = cfg.data
    want = {"generator": d.benchmark, "users": users, "seed": cfg.experiment.seed,
            "profile_size": d.profile_size, "queries": d.queries, "noise": d.noise,
            "heterogeneity": d.heterogeneity}
    have = load_stored(folder / "benchmark.json") or {}
    if any(have.get(k) != v for k, v in want.items()):
        make_benchmark(d.benchmark, users, cfg.experiment.seed, folder,
                       d.profile_size, d.queries, d.noise, d.heterogeneity)
    return folder, split, task


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


def _device_faults(cfg: Config) -> str:
    faults = to_mapping(cfg.faults.device)
    if not faults["hang_seconds"]:
        faults["hang_seconds"] = 1.5 * cfg.runtime.timeout  # past the device's timeout
    return json.dumps(faults)


def _services(cfg: Config, task, cloud) -> Services:
    """The server-side work methods ask for: training on pooled data and a fresh adapter
    (the device model, loaded once in this process, seeded by the method's name), and the
    cloud's answers (greedy, the task's answer length)."""

    def device_model():
        from clients.device import runtime

        return runtime(cfg.device)

    def fresh_adapter(name: str):
        from clients.adapter_slot import reset_adapter

        rt = device_model()
        reset_adapter(rt.model, user_seed(cfg.experiment.seed, name))
        return rt

    def as_record(rt) -> ArrayRecord:
        from clients.adapter_slot import adapter_state

        return ArrayRecord(torch_state_dict=adapter_state(rt))

    def train_pooled(method: str, pooled: dict[str, list[dict]]) -> ArrayRecord:
        from clients.device import runtime
        from clients.methods.shared_lora import train_pooled as train

        examples = [ex for u in sorted(pooled) for ex in task.profile_pairs(pooled[u])]
        state, report = train(runtime(cfg.device), task, examples, cfg.device,
                              user_seed(cfg.experiment.seed, method))
        log.info("%s: %d steps on %d pooled examples in %.1f s", method, report.steps,
                 len(examples), report.seconds)
        return ArrayRecord(torch_state_dict=state)

    def answer(prompts: list[str], owners: list[str]) -> list:
        return cloud().complete(prompts, [user_seed(cfg.experiment.seed, u) for u in owners],
                                greedy=True, max_new_tokens=task.max_new_tokens)

    return Services(train_pooled, lambda method: as_record(fresh_adapter(method)), answer,
                    cfg.fedavg)


def write_summary(cfg: Config, run_dir: Path, statistics: bool = True) -> dict:
    """Rebuild summary.json from the run directory (after each method, and at the end)."""
    data_dir, _, task_name = data_location(cfg, run_dir)
    summary = build_summary(run_dir, cfg, task_name, get_task(task_name).metric_names,
                            str(data_dir), statistics)
    write_json(run_dir / "summary.json", summary)
    return summary


def build_strategy(cfg: Config, run_dir: Path, should_stop: Callable[[], bool]
                   ) -> tuple[AugmentationStrategy, Task]:
    """The run's strategy (its data, cloud, ledger and failure log) and task; shared by
    the experiment and `cdcda bench sim`, so the benchmark drives the same exchange."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, split, task_name = prepare_data(cfg, run_dir)
    task = get_task(task_name)
    request = {
        "task": task_name, "data-dir": str(data_dir.resolve()), "split": split,
        "run-dir": str(run_dir.resolve()), "seed": cfg.experiment.seed,
        "device": json.dumps(to_mapping(cfg.device)),
        "faults": _device_faults(cfg), "fault-seed": cfg.faults.seed,
        "cohort": cfg.runtime.cohort,  # users per SuperNode (not charged to any user)
    }
    backend = {}
    opening = threading.Lock()  # the pipeline's augmentation threads may ask at once

    def cloud():
        from server.cloud import open_cloud

        with opening:
            if "llm" not in backend:
                backend["llm"] = open_cloud(cfg.cloud, should_stop)
        return backend["llm"]

    def augmenter(seeds, attempt, focus=None, part=(0, 1), nodes=None):
        """part = (round r, of R rounds): round r's share of augment.n (active); nodes =
        each user's SuperNode, named by its users (cloud.batch_by = "node" batches them
        together)."""
        from server.augment import augment

        r, rounds = part
        n = share(cfg.augment.n, r, rounds)
        together = nodes if cfg.cloud.batch_by == "node" else None
        items, report = augment(cloud(), task, seeds, dataclasses.replace(cfg.augment, n=n),
                                cfg.experiment.seed, attempt, cfg.faults.cloud, focus, r,
                                together)
        return items, report.per_user, report.errors

    rt = cfg.runtime
    settings = StrategySettings(rt.timeout, rt.retries, cfg.experiment.sample,
                                cfg.experiment.seed, cfg.augment.fallback,
                                cfg.augment.pipeline, max(1, cfg.cloud.replicas),
                                cfg.augment.rounds)
    strategy = AugmentationStrategy(request, run_dir, augmenter,
                                    Ledger(run_dir / LEDGER_FILE),
                                    FailureLog(run_dir / FAILURES_FILE), settings,
                                    should_stop=should_stop,
                                    services=_services(cfg, task, cloud))
    return strategy, task


def run_experiment(grid: Grid, cfg: Config, run_dir: Path,
                   should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Run every configured method over the same users; summary.json after each method."""
    strategy, task = build_strategy(cfg, run_dir, should_stop)
    wb = _Wandb(cfg, run_dir)
    timings = Timings(run_dir)
    sampler = MemorySampler(on_sample=timings.memory).start()
    summary: dict = {}
    try:
        start = time.perf_counter()
        strategy.discover(grid, cfg.experiment.users)
        timings.discovered(time.perf_counter() - start, len(list(grid.get_node_ids())))
        known = set((load_stored(run_dir / USERS_FILE) or {}).get("users", []))
        write_json(run_dir / USERS_FILE,
                   {"users": sorted(known | set(strategy.users))})
        for step, method in enumerate(cfg.experiment.methods):
            log.info("method %s: %d users", method, len(strategy.users))
            timings.begin(method)
            result = strategy.run_method(grid, method)
            timings.add(method, result.seconds)
            summary = write_summary(cfg, run_dir, statistics=False)
            metrics = summary["methods"][method]["metrics"]
            wb.log({f"{method}/{k}": v for k, v in metrics.items()} | {"method_index": step})
            shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in task.metric_names
                              if k in metrics)
            res = summary["methods"][method]
            log.info("%s: %s (%d users ok, %d failed)", method, shown or "no results",
                     len(res["per_user"]), len(res["failures"]), extra={"console": True})
    finally:
        sampler.stop()
        timings.save()
        wb.finish()
    return summary
