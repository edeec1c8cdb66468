"""The cloud's coordination of one experiment: seeds up, synthetic data down, metrics back.

Flower's round template (configure/aggregate around weights) does not fit a protocol that
never aggregates weights, so this drives the Grid directly, as Flower allows from
`@app.main()`: one small hook per phase, every exchange accounted in the ledger, every
failure in the failure log, every result stored as it lands. Failed users are retried
(`runtime.retries`); whatever is stored is never redone, so a killed run resumes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from strategies.accounting import Ledger
from strategies.exchange import DeviceExchange, RunStopped
from strategies.failures import FailureLog
from strategies.replies import Items, View, parse_items, reply_metrics
from tasks.files import load_stored, write_json

log = logging.getLogger(__name__)

BASE_METHODS = ("zero_shot", "profile_prompt")
TRAIN_METHODS = ("local_real", "cdcda")
SHARED_METHODS = ("shared_lora", "fedavg_lora", "cloud")  # see strategies/baselines.py
METHODS = BASE_METHODS + TRAIN_METHODS + SHARED_METHODS

# (seeds by user, attempt) -> (synthetic items by user, filter counts by user,
#                              cloud errors by user: {cause: failed requests})
Augmenter = Callable[[Mapping[str, list[dict]], int],
                     tuple[dict[str, list[dict]], dict[str, dict], dict[str, dict[str, int]]]]


@dataclass
class StrategySettings:
    timeout: float = 3600.0  # seconds from a device starting its work to its reply
    retries: int = 1  # extra attempts for users that failed
    sample: int = 0
    seed: int = 0
    fallback: str = "none"  # "real_only": train users whose augmentation failed on real data


@dataclass
class MethodResult:
    per_user: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # users still failed at the end
    seconds: float = 0.0


class AugmentationStrategy(DeviceExchange):
    """Runs each method over the sampled users and keeps only metrics."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path, augmenter: Augmenter,
                 ledger: Ledger, failures: FailureLog | None = None,
                 settings: StrategySettings | None = None,
                 should_stop: Callable[[], bool] | None = None, services=None):
        self.settings = settings or StrategySettings()
        super().__init__(request, run_dir, ledger, failures, self.settings.timeout,
                         should_stop)
        self.augmenter = augmenter
        self.services = services  # strategies.baselines.Services, for the shared methods

    def _result_path(self, method: str, user: str) -> Path:
        return self.run_dir / "results" / method / f"{user}.json"

    # --- phases --------------------------------------------------------------------------
    def wait_for_nodes(self, grid: Grid, expected: int, settle: float = 5.0,
                       max_wait: float = 60.0) -> list[int]:
        """SuperNodes register asynchronously: wait for `expected` of them, or until their
        number has not changed for `settle` seconds (a smaller federation), at most max_wait."""
        start = last_change = time.time()
        nodes: list[int] = []
        while True:
            if self.should_stop():
                raise RunStopped("stopped while waiting for SuperNodes")
            now_nodes = sorted(grid.get_node_ids())
            if len(now_nodes) != len(nodes):
                nodes, last_change = now_nodes, time.time()
            if len(nodes) >= expected or time.time() - start > max_wait or (
                    nodes and time.time() - last_change > settle):
                return nodes
            time.sleep(0.1)

    @property
    def users(self) -> list[str]:
        """The users taking part (sampled), sorted."""
        return list(self.user_node)

    def discover(self, grid: Grid, users: int = 0) -> dict[str, int]:
        """Learn which users each SuperNode holds (one tiny query per node, retried); with
        `users`, first wait for the ceil(users / cohort) SuperNodes that hold them."""
        expected = math.ceil(users / self.cohort)
        nodes = self.wait_for_nodes(grid, expected) if users else sorted(grid.get_node_ids())
        if users and len(nodes) != expected:
            log.warning("%d SuperNodes for %d users, %d per SuperNode (expected %d)",
                        len(nodes), users, self.cohort, expected)
        found: dict[str, int] = {}

        def commit(view: View, _) -> None:
            found[view.user] = view.node

        todo = list(nodes)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            msgs = [self._message(n, "query.user", "setup", attempt) for n in todo]
            failed = self._exchange(grid, msgs, "setup", attempt, lambda view: view, commit)
            # again: nodes that failed as a whole, or for one of their users
            again = {self.answered.get(u) for u in failed} | {
                n for n in todo if f"node-{n}" in failed}
            todo = [n for n in todo if n in again]
        if not found:
            raise RuntimeError(f"no device answered discovery ({len(nodes)} SuperNodes, "
                               f"runtime.timeout = {self.settings.timeout:g} s); see run.log")
        picked = sorted(found)
        if self.settings.sample and self.settings.sample < len(picked):
            picked = sorted(random.Random(self.settings.seed).sample(picked,
                                                                     self.settings.sample))
        self.user_node = {u: found[u] for u in picked}
        log.info("%d users on %d SuperNodes answered; %d users sampled", len(found),
                 len(set(found.values())), len(picked))
        return self.user_node

    def _pending(self, method: str, result: MethodResult) -> list[str]:
        """Users with no stored result for this method (resume skips the rest)."""
        todo = []
        for user in self.user_node:
            stored = load_stored(self._result_path(method, user))
            if stored is not None:
                result.per_user[user] = stored
            else:
                todo.append(user)
        if len(todo) < len(self.user_node):
            log.info("%s: %d users already done, %d to go", method,
                     len(self.user_node) - len(todo), len(todo))
        return todo

    def run_method(self, grid: Grid, method: str) -> MethodResult:
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}': use {', '.join(METHODS)}")
        start = time.perf_counter()
        result = MethodResult()
        todo = self._pending(method, result)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            if attempt:
                log.info("%s: retrying %d users (attempt %d)", method, len(todo), attempt + 1)
            last = attempt == self.settings.retries
            failed = self._attempt(grid, method, todo, attempt, last, result)
            todo = [u for u in todo if u in failed]  # sent again, grouped by node again
            result.failures = {u: failed[u] for u in todo}
        result.seconds = time.perf_counter() - start
        return result

    def _store(self, method: str, user: str, metrics: dict[str, float],
               result: MethodResult) -> None:
        write_json(self._result_path(method, user), metrics)
        result.per_user[user] = metrics

    def _attempt(self, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
                 result: MethodResult) -> dict[str, str]:
        if method in SHARED_METHODS:
            from strategies.baselines import RUNNERS

            return RUNNERS[method](self, grid, method, users, attempt, result)
        failed: dict[str, str] = {}
        synthetic: dict[str, list[dict]] = {}
        fallback: set[str] = set()
        own = None
        if method == "cdcda":
            synthetic, fallback = self._synthesise(grid, users, attempt, last, failed)
            users = [u for u in users if u in synthetic]

            def own(user: str) -> dict:
                return {"synthetic": ConfigRecord({"items": json.dumps(synthetic[user])})}

        kind = "evaluate" if method in BASE_METHODS else "train"
        msgs = self._messages(users, kind, method, attempt, own)

        def commit(view: View, metrics: dict[str, float]) -> None:
            if view.user in fallback:
                metrics["augment-fallback"] = 1.0  # trained real-only: the cloud failed
            self._store(method, view.user, metrics, result)

        if msgs:
            failed.update(self._exchange(grid, msgs, method, attempt,
                                         lambda view: reply_metrics(view.content), commit))
        return failed

    def _synthesise(self, grid: Grid, users: list[str], attempt: int, last: bool,
                    failed: dict[str, str]) -> tuple[dict[str, list[dict]], set[str]]:
        """Seed round + cloud augmentation, cached per user so a resumed run reuses it.

        Only complete augmentation is cached: a user whose cloud requests failed is
        retried (next attempt or next run), or with `fallback = "real_only"` trained on
        real data alone on the last attempt and marked so.
        """
        synthetic: dict[str, list[dict]] = {}
        missing = []
        for user in users:
            cached = load_stored(self.run_dir / "synthetic" / f"{user}.json")
            if cached is not None and isinstance(cached.get("items"), list):
                synthetic[user] = cached["items"]
            else:
                missing.append(user)
        if not missing:
            return synthetic, set()
        seeds: dict[str, list[dict]] = {}

        def commit(view: View, got: Items) -> None:
            seeds[view.user] = got.items

        msgs = self._messages(missing, "query.seeds", "cdcda", attempt)
        failed.update(self._exchange(grid, msgs, "cdcda", attempt, parse_items, commit))
        if self.should_stop():
            raise RunStopped("stopped before augmentation")
        items, counts, errors = self.augmenter(seeds, attempt) if seeds else ({}, {}, {})
        for user, kept in items.items():
            write_json(self.run_dir / "synthetic" / f"{user}.json",
                       {"seeds": seeds[user], "items": kept, "counts": counts[user]})
            synthetic[user] = kept
        fallback = set()
        for user, causes in errors.items():
            self._cloud_failed("cdcda", user, "augmentation", causes, attempt, failed)
            if last and self.settings.fallback == "real_only":
                synthetic[user] = []
                fallback.add(user)
                del failed[user]
        return synthetic, fallback


