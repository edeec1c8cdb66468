"""cdcda: seeds up, the cloud's synthetic examples down, each device trains its own LoRA on
real + synthetic data and replies with metrics only.

Augmentation is cached per user (`synthetic/<user>.json`) so a resumed run reuses it; only
complete augmentation is cached. With `augment.pipeline` (the default) a SuperNode's users
train as soon as their own synthetic data is ready, while the cloud writes the next ones'.
A user whose cloud requests failed is retried, or with `augment.fallback = "real_only"`
trained on real data alone on the last attempt, and marked so (`augment-fallback`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult, metrics_of, node_names
from strategies.replies import Items, View, parse_items
from tasks.files import load_stored, write_json

log = logging.getLogger(__name__)
PIPELINE_FILE = "pipeline.json"  # cdcda's cloud and device time, and their overlap


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    failed: dict[str, str] = {}
    synthetic = _cached(s, users)
    missing = [u for u in users if u not in synthetic]
    seeds = _seeds(s, grid, method, missing, attempt, failed) if missing else {}
    fallback: set[str] = set()

    def own(user: str) -> dict:
        return {"synthetic": ConfigRecord({"items": json.dumps(synthetic[user])})}

    def commit(view: View, metrics: dict[str, float]) -> None:
        if view.user in fallback:
            metrics["augment-fallback"] = 1.0  # trained real-only: the cloud failed
        s.store(method, view.user, metrics, result)

    def train_messages(among: list[str]) -> list:
        return s.messages([u for u in among if u in synthetic], "train", method, attempt, own)

    if not getattr(s.settings, "pipeline", True) or not seeds:
        if seeds:
            got = s.augmenter(seeds, attempt, nodes=node_names(s, seeds))
            _record(s, method, seeds, got, attempt, last, failed, synthetic, fallback)
        msgs = train_messages(users)
        if msgs:
            failed.update(s.exchange(grid, msgs, method, attempt, metrics_of, commit))
        return failed
    pipe = _Pipeline(s, seeds, attempt, users)
    start = time.perf_counter()

    def more() -> tuple[list, bool]:
        out: list = []
        for node_users, augmented in pipe.ready():
            _record(s, method, {u: seeds[u] for u in node_users if u in seeds}, augmented,
                    attempt, last, failed, synthetic, fallback)
            out += train_messages(node_users)
        return out, pipe.finished()

    busy: list[tuple[float, float]] = []
    first = train_messages([u for node in pipe.idle_nodes for u in node])
    failed.update(s.exchange(grid, first, method, attempt, metrics_of, commit, more, busy))
    pipe.report(s.run_dir, method, time.perf_counter() - start, busy)
    return failed


def _cached(s: Coordinator, users: list[str]) -> dict[str, list[dict]]:
    """Each user's cached synthetic items (a resumed run reuses them)."""
    synthetic = {}
    for user in users:
        cached = load_stored(s.run_dir / "synthetic" / f"{user}.json")
        if cached is not None and isinstance(cached.get("items"), list):
            synthetic[user] = cached["items"]
    return synthetic


def _seeds(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int,
           failed: dict[str, str]) -> dict[str, list[dict]]:
    """The seed round: each user's seed examples, as its device sent them."""
    seeds: dict[str, list[dict]] = {}

    def commit(view: View, got: Items) -> None:
        seeds[view.user] = got.items

    msgs = s.messages(users, "query.seeds", method, attempt)
    failed.update(s.exchange(grid, msgs, method, attempt, parse_items, commit))
    if s.should_stop():
        raise RunStopped("stopped before augmentation")
    return seeds


def _record(s: Coordinator, method: str, seeds: dict[str, list[dict]], augmented: tuple,
            attempt: int, last: bool, failed: dict[str, str], synthetic: dict[str, list[dict]],
            fallback: set[str]) -> None:
    """Cache the users whose augmentation is complete; count the cloud's failures (with
    augment.fallback = "real_only", on the last attempt such a user trains on real data)."""
    items, counts, errors = augmented
    for user, kept in items.items():
        write_json(s.run_dir / "synthetic" / f"{user}.json",
                   {"seeds": seeds[user], "items": kept, "counts": counts[user]})
        synthetic[user] = kept
    if s.should_stop():  # requests the stop cut short are not the cloud's failures
        raise RunStopped(f"stopped during augmentation ({len(items)} users augmented)")
    for user, causes in errors.items():
        s.cloud_failed(method, user, "augmentation", causes, attempt, failed)
        if last and s.settings.fallback == "real_only":
            synthetic[user] = []
            fallback.add(user)
            del failed[user]


class _Pipeline:
    """The cloud augments one SuperNode's users at a time in a thread, and each node's
    training is sent as soon as its users' data is ready. A node's users go together, as
    they would without the pipeline, so its cohort (and each adapter) is the same; each
    user's augmentation is its own (its seed, its batch), so its data is the same too."""

    def __init__(self, s: Coordinator, seeds: dict[str, list[dict]], attempt: int,
                 users: list[str]):
        by_node: dict[int, list[str]] = {}
        for user in users:
            by_node.setdefault(s.user_node.get(user, -1), []).append(user)
        nodes = [by_node[n] for n in sorted(by_node)]
        self.idle_nodes = [n for n in nodes if not any(u in seeds for u in n)]
        self.todo = [n for n in nodes if any(u in seeds for u in n)]
        self.cloud: list[tuple[float, float]] = []  # perf_counter spans of augmentation
        self.queue: queue.Queue = queue.Queue()
        self.left = len(self.todo)
        work, lock = iter(self.todo), threading.Lock()
        # one thread per cloud replica, each augmenting a node at a time: nodes come back in
        # the order they finish, and each node's data is its own whichever thread wrote it
        for i in range(max(1, min(getattr(s.settings, "cloud_workers", 1), len(self.todo)))):
            threading.Thread(target=self._produce, args=(s, seeds, attempt, work, lock),
                             name=f"cdcda-cloud-{i}", daemon=True).start()

    def _produce(self, s: Coordinator, seeds: dict[str, list[dict]], attempt: int,
                 work, lock: threading.Lock) -> None:
        while not s.should_stop():
            with lock:
                node_users = next(work, None)
            if node_users is None:
                return
            try:
                t0 = time.perf_counter()
                mine = {u: seeds[u] for u in node_users if u in seeds}
                got = s.augmenter(mine, attempt, nodes=node_names(s, mine))
                self.cloud.append((t0, time.perf_counter()))
            except BaseException as err:  # raised again in the strategy's thread
                self.queue.put((node_users, err))
                return
            self.queue.put((node_users, got))

    def ready(self):
        """The nodes whose augmentation has come back since the last call."""
        while True:
            try:
                node_users, got = self.queue.get_nowait()
            except queue.Empty:
                return
            self.left -= 1
            if isinstance(got, BaseException):
                raise got
            yield node_users, got

    def finished(self) -> bool:
        return self.left == 0

    def report(self, run_dir: Path, method: str, wall: float,
               busy: list[tuple[float, float]]) -> None:
        """Log and keep (pipeline.json, summed over attempts and sessions) how long the
        cloud and the devices each worked, and both at once."""
        cloud = _union(self.cloud)  # replicas' spans overlap: the cloud was busy in any
        figures = {"seconds": wall, "cloud_seconds": sum(b - a for a, b in cloud),
                   "devices_seconds": sum(b - a for a, b in busy),
                   "both_seconds": _overlap(cloud, busy)}
        log.info("%s: cloud busy %.1f s, devices %.1f s, both at once %.1f s of %.1f s "
                 "(%.0f%%)", method, figures["cloud_seconds"], figures["devices_seconds"],
                 figures["both_seconds"], wall, 100 * figures["both_seconds"] / max(wall, 1e-9))
        stored = load_stored(run_dir / PIPELINE_FILE) or {}
        mine = stored.get(method, {})
        mine = {k: float(mine.get(k, 0.0)) + v for k, v in figures.items()}
        mine["overlap_share"] = mine["both_seconds"] / max(mine["seconds"], 1e-9)
        write_json(run_dir / PIPELINE_FILE, {**stored, method: mine})


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The same time as disjoint, sorted spans."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _overlap(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> float:
    """Total time inside both a span of `xs` and one of `ys` (each list disjoint, sorted)."""
    total, j = 0.0, 0
    for a, b in xs:
        while j < len(ys) and ys[j][1] <= a:
            j += 1
        k = j
        while k < len(ys) and ys[k][0] < b:
            total += max(0.0, min(b, ys[k][1]) - max(a, ys[k][0]))
            k += 1
    return total


def counts(run_dir: Path, user: str) -> dict | None:
    """A user's filter counts, as its cached augmentation holds them."""
    cached = load_stored(run_dir / "synthetic" / f"{user}.json")
    return cached["counts"] if cached and isinstance(cached.get("counts"), dict) else None


METHOD = Method(
    name="cdcda", run=run, kinds=("query.seeds", "train"),
    traffic="seeds up, synthetic down", trains="own", trainer="cohort", uses_cloud=True,
    augments=True, counts=counts)
