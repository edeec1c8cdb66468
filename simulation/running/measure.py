"""What a run costs the machine: wall time per method and session, and peak memory of the
driver (this process) and of the Ray processes it started, kept in timings.json.

Memory is sampled with psutil in a daemon thread, about once a second, as resident set
size (RSS) in MiB. Ray's worker processes (`ray::...`, the simulated devices) are told apart from
Ray's own services (raylet, GCS, dashboard), which are counted only in `total`. RSS counts
shared pages (torch's libraries, Ray's object store in /dev/shm) once per process, so the
sums overstate what the machine really uses; they are an upper bound. A Ray cluster's
workers on other machines are not this process's descendants and are not seen.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from simulation.results.summary import DISCOVERY_KEY, MEMORY_KEY, TIMINGS_FILE
from tasks.files import load_stored, write_json

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# driver: this process; workers: the sum over Ray workers (devices); worker_max: the
# largest one; total: this process and every descendant at the same instant
FIELDS = ("driver_mb", "workers_mb", "worker_max_mb", "total_mb", "workers")


# Ray's own services that also take a `ray::` title: not devices
_RAY_SERVICES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _is_worker(proc: psutil.Process) -> bool:
    """A Ray worker process: its title is `ray::<actor or task>` (`ray::IDLE` between
    tasks); one not yet claimed still runs `default_worker.py`."""
    cmd = proc.cmdline()
    if not cmd:
        return False
    if cmd[0].startswith("ray::"):
        return not cmd[0].startswith(_RAY_SERVICES)
    return any(a.endswith("default_worker.py") for a in cmd[:3])


def process_tree(proc: psutil.Process | None = None) -> list[tuple[psutil.Process, bool]]:
    """This process's descendants, each with whether it is a Ray worker. Listing them
    reads every process on the machine (/proc), so samplers reuse the list a while."""
    proc = proc or psutil.Process()
    out = []
    with contextlib.suppress(psutil.Error):
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                out.append((child, _is_worker(child)))
    return out


def sample(proc: psutil.Process | None = None,
           tree: list[tuple[psutil.Process, bool]] | None = None) -> dict[str, float]:
    """RSS now, in MiB: this process, its Ray workers (sum and largest), all together."""
    proc = proc or psutil.Process()
    driver = proc.memory_info().rss
    workers: list[int] = []
    others = 0
    for child, is_worker in process_tree(proc) if tree is None else tree:
        try:
            rss = child.memory_info().rss
        except psutil.Error:  # it ended since the listing
            continue
        if is_worker:
            workers.append(rss)
        else:
            others += rss
    return {"driver_mb": driver / MIB, "workers_mb": sum(workers) / MIB,
            "worker_max_mb": max(workers, default=0) / MIB,
            "total_mb": (driver + sum(workers) + others) / MIB, "workers": len(workers)}


def merge_peaks(old: Mapping[str, float], new: Mapping[str, float]) -> dict[str, float]:
    """Field by field maximum (a resumed run's peak is the highest of its sessions)."""
    out = {k: max(float(old.get(k, 0.0)), float(new.get(k, 0.0))) for k in FIELDS}
    out["workers"] = int(out["workers"])  # a count of processes
    return out


class MemorySampler:
    """Samples every `interval` seconds until stopped; `peaks` holds the maxima so far.

    `on_sample(peaks)` is called after each sample (the experiment stores them). One
    sample is taken at `start` and one at `stop`, however short the time between.
    """

    def __init__(self, interval: float = 1.0,
                 on_sample: Callable[[dict[str, float]], None] | None = None,
                 relist: int = 10):
        self.interval = interval
        self.on_sample = on_sample
        self.relist = relist  # samples between listings of the process tree
        self.peaks: dict[str, float] = {k: 0.0 for k in FIELDS}
        self._tree: list[tuple[psutil.Process, bool]] = []
        self._taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cdcda-memory", daemon=True)

    def take(self) -> dict[str, float]:
        # listing the tree each second cost ~2% of the driver's CPU at 1,000 users (a
        # scan of every process on the machine); Ray's workers live for the whole run.
        # Until a worker is seen, relist every sample: a run shorter than `relist`
        # samples would otherwise never see its workers (they start after the first)
        seen = any(is_worker for _, is_worker in self._tree)
        if self._taken % self.relist == 0 or not seen:
            self._tree = process_tree()
        self._taken += 1
        try:
            self.peaks = merge_peaks(self.peaks, sample(tree=self._tree))
        except psutil.Error as err:  # measuring must never take the run down
            log.debug("memory sample failed: %s", err)
        if self.on_sample is not None:
            self.on_sample(dict(self.peaks))
        return self.peaks

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.take()
            except Exception as err:  # e.g. a full disk: the run goes on, unmeasured
                log.warning("memory sampling stopped: %s", err)
                return

    def start(self) -> MemorySampler:
        self.take()
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """End the sampling (one last sample); returns the peaks."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            return self.take()
        return self.peaks

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Timings:
    """Wall time per method and per session, and peak memory, accumulated across resumed
    sessions in timings.json: seconds add up, memory peaks keep the highest. Written by
    the experiment and, every second, by the memory sampler's thread (hence the lock)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / TIMINGS_FILE
        self.lock = threading.Lock()
        self.data = load_stored(self.path) or {}
        self.data.setdefault("methods", {})
        self.data.setdefault(MEMORY_KEY, {})
        self.data["sessions"] = self.data.get("sessions", 0) + 1
        self.start = time.perf_counter()
        self.before = self.data.get("seconds", 0.0)

    def begin(self, method: str) -> None:
        """Say which method runs now (the progress bars time each method from here)."""
        with self.lock:
            self.data["running"] = method
            self._save()

    def add(self, method: str, seconds: float) -> None:
        with self.lock:
            self.data["methods"][method] = self.data["methods"].get(method, 0.0) + seconds
            self.data.pop("running", None)
            self._save()

    def discovered(self, seconds: float, nodes: int) -> None:
        """One discovery round (every session has one): its time is the run's measure of
        pure orchestration overhead, a message per SuperNode that does no work."""
        with self.lock:
            d = self.data.setdefault(DISCOVERY_KEY, {"seconds": 0.0, "rounds": 0, "nodes": 0})
            d["seconds"] += seconds
            d["rounds"] += 1
            d["nodes"] = nodes
            self._save()

    def memory(self, peaks: dict[str, float]) -> None:
        """Keep the higher peaks; the file is written only when one rose."""
        with self.lock:
            merged = merge_peaks(self.data[MEMORY_KEY], peaks)
            if merged != self.data[MEMORY_KEY]:
                self.data[MEMORY_KEY] = merged
                self._save()

    def save(self) -> None:
        with self.lock:
            self._save()

    def _save(self) -> None:
        self.data["seconds"] = self.before + time.perf_counter() - self.start
        write_json(self.path, self.data)
