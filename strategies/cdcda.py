"""The cloud's coordination of one experiment: seeds up, synthetic data down, metrics back.

Flower's round template (configure/aggregate around weights) does not fit a protocol that
never aggregates weights, so this drives the Grid directly, as Flower allows from
`@app.main()`: one small hook per phase, every exchange accounted in the ledger, every
failure in the failure log, every result stored as it lands. Failed users are retried
(`runtime.retries`); whatever is stored is never redone, so a killed run resumes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import Message
from flwr.serverapp import Grid

from strategies.accounting import Ledger
from strategies.exchange import DeviceExchange, Items, RunStopped, parse_items, reply_metrics
from strategies.failures import FailureLog
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

    def discover(self, grid: Grid, expected: int = 0) -> dict[int, str]:
        """Learn which user each SuperNode holds (one tiny query per node, retried)."""
        nodes = self.wait_for_nodes(grid, expected) if expected else sorted(grid.get_node_ids())
        if expected and len(nodes) != expected:
            log.warning("%d SuperNodes for experiment.users = %d", len(nodes), expected)
        found: dict[int, str] = {}

        def commit(node: int, reply: Message) -> None:
            found[node] = str(reply.content["meta"]["user-id"])

        todo = list(nodes)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            msgs = [self._message(n, "query.user", "setup", attempt) for n in todo]
            self._exchange(grid, msgs, "setup", attempt, lambda node, reply: reply, commit)
            todo = [n for n in todo if n not in found]
        if not found:
            raise RuntimeError(f"no device answered discovery ({len(nodes)} SuperNodes, "
                               f"runtime.timeout = {self.settings.timeout:g} s); see run.log")
        users = sorted(found.items(), key=lambda kv: kv[1])
        if self.settings.sample and self.settings.sample < len(users):
            picked = random.Random(self.settings.seed).sample(users, self.settings.sample)
            users = sorted(picked, key=lambda kv: kv[1])
        self.node_user = dict(users)
        log.info("%d devices answered; %d users sampled", len(found), len(users))
        return self.node_user

    def _pending(self, method: str, result: MethodResult) -> list[int]:
        """Nodes whose user has no stored result for this method (resume skips the rest)."""
        todo = []
        for node, user in self.node_user.items():
            stored = load_stored(self._result_path(method, user))
            if stored is not None:
                result.per_user[user] = stored
            else:
                todo.append(node)
        if len(todo) < len(self.node_user):
            log.info("%s: %d users already done, %d to go", method,
                     len(self.node_user) - len(todo), len(todo))
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
            todo = [n for n in todo if self.node_user[n] in failed]
            result.failures = {self.node_user[n]: failed[self.node_user[n]] for n in todo}
        result.seconds = time.perf_counter() - start
        return result

    def _store(self, method: str, user: str, metrics: dict[str, float],
               result: MethodResult) -> None:
        write_json(self._result_path(method, user), metrics)
        result.per_user[user] = metrics

    def _attempt(self, grid: Grid, method: str, nodes: list[int], attempt: int, last: bool,
                 result: MethodResult) -> dict[str, str]:
        if method in SHARED_METHODS:
            from strategies.baselines import RUNNERS

            return RUNNERS[method](self, grid, method, nodes, attempt, result)
        failed: dict[str, str] = {}
        synthetic: dict[str, list[dict]] = {}
        fallback: set[str] = set()
        if method == "cdcda":
            synthetic, fallback = self._synthesise(grid, nodes, attempt, last, failed)
            nodes = [n for n in nodes if self.node_user[n] in synthetic]
        kind = "evaluate" if method in BASE_METHODS else "train"
        msgs = [self._message(n, kind, method, attempt, synthetic.get(self.node_user[n])
                              if method == "cdcda" else None) for n in nodes]

        def commit(node: int, metrics: dict[str, float]) -> None:
            user = self.node_user[node]
            if user in fallback:
                metrics["augment-fallback"] = 1.0  # trained real-only: the cloud failed
            self._store(method, user, metrics, result)

        if msgs:
            failed.update(self._exchange(grid, msgs, method, attempt,
                                         lambda node, reply: reply_metrics(reply), commit))
        return failed

    def _synthesise(self, grid: Grid, nodes: list[int], attempt: int, last: bool,
                    failed: dict[str, str]) -> tuple[dict[str, list[dict]], set[str]]:
        """Seed round + cloud augmentation, cached per user so a resumed run reuses it.

        Only complete augmentation is cached: a user whose cloud requests failed is
        retried (next attempt or next run), or with `fallback = "real_only"` trained on
        real data alone on the last attempt and marked so.
        """
        synthetic: dict[str, list[dict]] = {}
        missing = []
        for n in nodes:
            cached = load_stored(self.run_dir / "synthetic" / f"{self.node_user[n]}.json")
            if cached is not None and isinstance(cached.get("items"), list):
                synthetic[self.node_user[n]] = cached["items"]
            else:
                missing.append(n)
        if not missing:
            return synthetic, set()
        seeds: dict[str, list[dict]] = {}

        def commit(node: int, got: Items) -> None:
            seeds[self.node_user[node]] = got.items

        msgs = [self._message(n, "query.seeds", "cdcda", attempt) for n in missing]
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


