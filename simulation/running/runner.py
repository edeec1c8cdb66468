"""Start Ray (local or a cluster) and the Flower simulation engine for one run directory."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from pathlib import Path

from simulation.config import Config, config_changes, dump_config, load_config
from simulation.running import cluster, signals
from simulation.running.guards import (
    check_local_resources,
    clear_stale_markers,
    cloud_replicas,
    is_secret,
    only_run,
)
from simulation.running.logs import run_log
from simulation.running.signals import STOP, stop_on_signals
from strategies.methods import get_method
from tasks.files import check_folder

log = logging.getLogger(__name__)

# What Ray workers (the devices) inherit. Never the cloud's API key: the cloud runs in this
# process, and Ray records a runtime_env's variables in its session logs.
_PASS_ENV = ("CDCDA_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "WANDB_MODE")


def _environment(run_dir: Path, cfg: Config) -> dict[str, str]:
    threads = str(max(1, int(cfg.runtime.client_cpus)))
    env = {
        "CDCDA_RUN_DIR": str(run_dir),
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": threads,  # one simulated device = client_cpus cores
        "MKL_NUM_THREADS": threads,
    }
    env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
    return env


def _resolve_models(cfg: Config) -> None:
    """Convert bundled models once, here, before devices ask for them; say whose it is."""
    from models import resolve_model_dir

    roles = [("device.model", cfg.device.model)]
    if cfg.cloud.backend == "embedded" and any(get_method(m).uses_cloud
                                               for m in cfg.experiment.methods):
        roles.append(("cloud.model", cfg.cloud.model))
    for option, name in roles:
        try:
            resolve_model_dir(name)
        except (ValueError, RuntimeError, OSError) as err:
            raise ValueError(f"{option} = '{name}': {err}") from None


def _quiet_model_loading(verbose: bool):
    """Hide transformers' per-load progress bars during the run (the cached base models
    load in seconds, between the method lines); returns the function that restores them."""
    from transformers.utils import logging as hf_logging

    if verbose or not hf_logging.is_progress_bar_enabled():
        return lambda: None
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar


def run(cfg: Config, run_dir: Path, console=None, verbose: bool = False) -> dict:
    """Run the experiment in `run_dir` (resuming what is there) and return its summary.

    Raises `Interrupted` on SIGINT/SIGTERM once Ray is down and the summary is rebuilt.
    """
    address = cluster.resolve_address(cfg.runtime.ray_address)  # a wrong one fails at once
    if address is None:
        check_local_resources(cfg)
    import ray
    from flwr.simulation import run_simulation

    from clients.client_app import app as client_app
    from simulation.running.experiment import prepare_data, write_summary
    from simulation.running.server_app import app as server_app

    run_dir = run_dir.resolve()
    check_folder(run_dir)
    previous = run_dir / "config.toml"
    if previous.exists():  # resuming: stored results must come from the same experiment
        changes = config_changes(load_config(previous), cfg)
        if changes:
            raise ValueError(
                f"{run_dir} holds a run with another config ({'; '.join(changes[:5])}); "
                f"use a new --out, or resume it with --config {previous}")
    run_dir.mkdir(parents=True, exist_ok=True)
    with only_run(run_dir), stop_on_signals(), run_log(run_dir, verbose):
        clear_stale_markers(run_dir)
        # bad data and unknown models fail here, naming file, field or option, before Ray
        # starts and before config.toml claims the folder for this experiment
        prepare_data(cfg, run_dir)
        _resolve_models(cfg)
        dump_config(cfg, previous)
        quiet = _quiet_model_loading(verbose)  # conversions above showed their bars
        try:
            _simulate(cfg, run_dir, console, verbose, ray, run_simulation, server_app,
                      client_app)
        finally:
            quiet()
            summary = write_summary(cfg, run_dir)  # from what is stored, whatever happened
    return summary


def _simulate(cfg: Config, run_dir: Path, console, verbose: bool, ray, run_simulation,
              server_app, client_app) -> None:
    env = _environment(run_dir, cfg)
    saved_environ = dict(os.environ)  # restored at the end: nothing leaks into later runs
    os.environ.update({k: v for k, v in env.items() if not k.endswith("NUM_THREADS")})
    os.environ.setdefault("FLWR_HOME", str(run_dir / ".flwr"))
    address = cluster.resolve_address(cfg.runtime.ray_address)  # None: a local Ray
    stop = threading.Event()
    watcher = None
    try:
        if not ray.is_initialized():
            try:
                _start_ray(ray, cfg, address, env, verbose, run_dir)
            except SystemExit as exit_:  # ray.init's own SIGTERM handler: sys.exit(15)
                if exit_.code != 15:
                    raise
                STOP.set()
                raise signals.Interrupted(15) from None  # stopped, said so, resumable
            signals.reinstall()  # ray.init takes SIGTERM over: Ctrl-C and SIGTERM are ours
        resources = {"num_cpus": cfg.runtime.client_cpus, "num_gpus": cfg.runtime.client_gpus}
        if console is not None:
            watcher = threading.Thread(target=_watch, args=(run_dir, cfg, console, stop),
                                       daemon=True)
            watcher.start()
        from simulation.running import actors, engine

        reserved = _place_cloud(cfg, resources)
        engine.install()  # Flower's message dispatcher in one scan per pass
        actors.install(reserved)  # a dead device worker is restarted, not left in the pool
        with signals.engine_running(local_ray=address is None):
            run_simulation(server_app=server_app, client_app=client_app,
                           num_supernodes=math.ceil(cfg.experiment.users / cfg.runtime.cohort),
                           backend_config={"client_resources": resources})
    finally:
        STOP.set()  # whatever ended the engine, the ServerApp thread must end too
        stop.set()
        if watcher is not None:
            watcher.join()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved_environ)
        _join_server_thread()


def _start_ray(ray, cfg: Config, address: str | None, env: dict[str, str], verbose: bool,
               run_dir: Path) -> None:
    """A local Ray of our own (address None), or join the cluster at `address`: then only
    what applies to a driver is passed, and every node must see `run_dir`."""
    # devices' output goes to run.log (see clients/worker_log.py), not the terminal
    init = {"address": address or "local", "log_to_driver": verbose,
            "logging_level": logging.DEBUG if verbose else logging.WARNING,
            "runtime_env": {"env_vars": {**env, "PYTHONPATH": os.pathsep.join(sys.path)}}}
    if address is None:  # "local": never a `ray start` cluster this machine happens to run
        init["include_dashboard"] = False
        if cfg.runtime.num_cpus:
            init["num_cpus"] = cfg.runtime.num_cpus
        # Ray's processes, and the devices they start, inherit this process's environment:
        # the cloud's API key (and any other secret) is out of it while Ray starts
        hidden = {k: os.environ.pop(k) for k in list(os.environ) if is_secret(k, cfg)}
        try:
            ray.init(**init)
        finally:
            os.environ.update(hidden)
        return
    if cfg.runtime.num_cpus:
        log.warning("runtime.num_cpus = %s is ignored on a Ray cluster: each node offers "
                    "what its `ray start --num-cpus` gave", cfg.runtime.num_cpus)
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError) as err:
        raise cluster.joined(err, address, cfg.runtime.ray_address) from None
    from simulation.running.experiment import data_location

    nodes = cluster.check_nodes(run_dir, data_location(cfg, run_dir)[0].resolve(),
                                cfg.runtime.client_cpus, cfg.runtime.client_gpus)
    log.info("joined the Ray cluster at %s: %d node(s) can host devices", address, len(nodes))


def _place_cloud(cfg: Config, resources: dict) -> dict[str, dict[str, float]]:
    """Start the cloud's replicas before Flower sizes its device pool, so that the CPUs
    and GPUs they hold are not counted for devices too; what they reserve, per node."""
    if not cloud_replicas(cfg):
        return {}
    from server.replicas import wait_placed
    from simulation.running import actors

    reserved = wait_placed(cfg.cloud)
    fit = actors.capacity(resources, reserved)
    if fit < 1:
        c = cfg.cloud
        raise ValueError(
            f"no device fits beside the cloud: cloud.replicas = {c.replicas} reserve "
            f"{c.num_cpus:g} CPUs and {c.num_gpus:g} GPUs each, and each device needs "
            f"runtime.client_cpus = {cfg.runtime.client_cpus:g}, runtime.client_gpus = "
            f"{cfg.runtime.client_gpus:g}")
    log.info("%d device worker(s) fit beside the cloud's replicas", fit)
    return reserved


def _join_server_thread(grace: float = 30.0) -> None:
    """Wait for Flower's ServerApp thread to see STOP and end (it is not a daemon)."""
    for t in threading.enumerate():
        if "server_th" in t.name and t is not threading.current_thread():
            t.join(grace)


def _watch(run_dir: Path, cfg: Config, console, stop: threading.Event) -> None:
    """A progress bar per method, fed by the per-user result files as they land; the
    clock shows a method's own time (timings.json says which one runs, and how long
    finished ones took)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tasks.files import load_stored

    def clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    users = cfg.experiment.sample or cfg.experiment.users
    with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[clock]}"), console=console,
                  transient=False) as bar:
        tasks = {m: bar.add_task(m, total=users, clock="") for m in cfg.experiment.methods}
        since: dict[str, float] = {}
        counts: dict[str, int] = {}
        last: list[str | None] = [None]

        def refresh(final: bool = False) -> None:
            timings = load_stored(run_dir / "timings.json") or {}
            done, now = timings.get("methods", {}), timings.get("running")
            for m, t in tasks.items():
                # only the running method's folder grows: list it alone each second
                # (globbing all seven at 10,000 users took ~0.2 s of every second);
                # once more as it ends, and at the start and the end for resumed counts
                if final or m in (now, last[0]) or m not in counts:
                    counts[m] = _count_results(run_dir / "results" / m)
                count = counts[m]
                if m == now:
                    since.setdefault(m, time.perf_counter())
                    shown = clock(time.perf_counter() - since[m])
                else:
                    shown = clock(done[m]) if m in done else ""
                bar.update(t, completed=count, clock=shown)
            last[0] = now

        while not stop.wait(1.0):
            refresh()
        refresh(final=True)  # the final counts, after the run has stopped


def _count_results(folder: Path) -> int:
    """Stored per-user results in `folder` (one directory listing, no Path per file)."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(".json"))
    except FileNotFoundError:
        return 0
