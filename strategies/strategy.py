"""The cloud's coordination of one experiment: every method over the same users, metrics only.

Flower's round template (configure/aggregate around weights) does not fit a protocol that
never aggregates weights, so this drives the Grid directly, as Flower allows from
`@app.main()`. What each method sends and expects is its own (`strategies/methods/`); this
finds the users, runs a method's attempts over those not done, retries the failed ones
(`runtime.retries`) and stores every result as it lands, so a killed run resumes. Every
exchange is accounted in the ledger and every failure in the failure log
(`strategies/exchange.py`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flwr.serverapp import Grid

from strategies.accounting import Ledger
from strategies.exchange import DeviceExchange, RunStopped
from strategies.failures import FailureLog
from strategies.methods import REGISTRY, get_method
from strategies.methods.base import Augmenter, MethodResult, Services
from strategies.replies import View
from tasks.files import load_stored, write_json

log = logging.getLogger(__name__)


@dataclass
class StrategySettings:
    timeout: float = 3600.0  # seconds from a device starting its work to its reply
    retries: int = 1  # extra attempts for users that failed
    sample: int = 0
    seed: int = 0
    fallback: str = "none"  # "real_only": train users whose augmentation failed on real data
    pipeline: bool = True  # a user trains as soon as its own synthetic data is ready
    cloud_workers: int = 1  # nodes the pipeline augments at once (one per cloud replica)
    rounds: int = 2  # cdcda_active's rounds of augmentation and training


class AugmentationStrategy(DeviceExchange):
    """Runs each method over the sampled users and keeps only metrics."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path,
                 augmenter: Augmenter | None, ledger: Ledger, failures: FailureLog | None = None,
                 settings: StrategySettings | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 services: Services | None = None):
        self.settings = settings or StrategySettings()
        super().__init__(request, run_dir, ledger, failures, self.settings.timeout,
                         should_stop)
        self.augmenter = augmenter  # the cloud's augmentation, for methods that augment
        self.services = services  # server-side model work, for methods that need it
        self.arrays_up = {name: m.arrays_up for name, m in REGISTRY.items()}

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
            failed = self.exchange(grid, msgs, "setup", attempt, lambda view: view, commit)
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
        """The method's attempts over the users with no stored result, failed ones again."""
        run = get_method(method).run
        start = time.perf_counter()
        result = MethodResult()
        todo = self._pending(method, result)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            if attempt:
                log.info("%s: retrying %d users (attempt %d)", method, len(todo), attempt + 1)
            last = attempt == self.settings.retries
            failed = run(self, grid, method, todo, attempt, last, result)
            todo = [u for u in todo if u in failed]  # sent again, grouped by node again
            result.failures = {u: failed[u] for u in todo}
        result.seconds = time.perf_counter() - start
        return result

    def store(self, method: str, user: str, metrics: dict[str, float],
              result: MethodResult) -> None:
        """A user's metrics, written as its reply lands (a resumed run skips the user)."""
        write_json(self._result_path(method, user), metrics)
        result.per_user[user] = metrics
