"""What a run checks and holds before Ray starts: its folder's lock, a killed session's
leftovers, secrets kept from the devices, and resources this machine can give."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from simulation.config import Config
from strategies.methods import get_method
from tasks.files import INFLIGHT_DIR

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"


@contextlib.contextmanager
def only_run(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold `folder`'s lock for the run: a second run on the same --out would train every
    user again beside the first; it is refused instead, naming the folder."""
    lock = FileLock(folder / LOCK_FILE)
    owner = folder / f"{LOCK_FILE}.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = owner.read_text().strip() if owner.is_file() else "unknown"
        raise ValueError(f"{folder} is in use by another cdcda {what} ({who}; it holds "
                         f"{folder / LOCK_FILE}): wait for it to end, or use another "
                         "--out") from None
    # the kernel drops the lock of a killed run: its successor simply takes it over
    owner.write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
    try:
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


_SECRET = re.compile(r"(API_?KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def is_secret(name: str, cfg: Config) -> bool:
    """An environment variable no device may see: the cloud's key (cloud.openai.api_key_env)
    and anything named like a key, secret or password. HF_TOKEN stays: a device may load
    a gated hub model."""
    return name == cfg.cloud.openai.api_key_env or bool(_SECRET.search(name))


def clear_stale_markers(run_dir: Path) -> int:
    """Remove a killed session's device start markers (.inflight/): they name messages of
    a Flower run that no longer exists, and would pile up run after run."""
    folder = run_dir / INFLIGHT_DIR
    try:
        stale = list(folder.iterdir())
    except FileNotFoundError:
        return 0
    for marker in stale:
        if marker.is_dir():  # the given-up markers
            shutil.rmtree(marker, ignore_errors=True)
        else:
            marker.unlink(missing_ok=True)
    if stale:
        log.info("removed %d stale device start markers from %s", len(stale), folder)
    return len(stale)


def cloud_replicas(cfg: Config) -> bool:
    """Whether this run starts the cloud's replicas (a method of it uses the cloud)."""
    return cfg.cloud.replicas > 0 and any(get_method(m).uses_cloud
                                          for m in cfg.experiment.methods)


def check_local_resources(cfg: Config) -> None:
    """A device must fit this machine's Ray, or Flower's engine fails with no option named."""
    rt = cfg.runtime
    cpus = rt.num_cpus or os.cpu_count() or 1
    if rt.client_cpus > cpus:
        raise ValueError(f"runtime.client_cpus = {rt.client_cpus:g} but the local Ray has "
                         f"{cpus:g} CPUs (runtime.num_cpus, 0 = all cores): no device fits")
    c = cfg.cloud
    if cloud_replicas(cfg) and c.replicas * c.num_cpus + rt.client_cpus > cpus:
        raise ValueError(
            f"cloud.replicas = {c.replicas} x cloud.num_cpus = {c.num_cpus:g} leaves less "
            f"than runtime.client_cpus = {rt.client_cpus:g} of the local Ray's {cpus:g} "
            f"CPUs for devices: lower them (cloud.num_cpus = 0 shares the devices' cores)")
    if rt.client_gpus > 0:
        import torch

        if torch.cuda.device_count() < min(rt.client_gpus, 1):
            raise ValueError(f"runtime.client_gpus = {rt.client_gpus:g} but this machine has "
                             "no CUDA GPU: set it to 0, or join a Ray cluster with GPUs "
                             "(--ray-address)")
