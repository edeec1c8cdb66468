"""The cloud's coordination of one experiment: seeds up, synthetic data down, metrics back.

Flower's round template (configure/aggregate around weights) does not fit a protocol that
never aggregates weights, so this drives the Grid directly, as Flower allows from
`@app.main()`: one small hook per phase, every reply accounted, stored and checked.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from strategies.accounting import Ledger
from tasks.files import write_json

log = logging.getLogger(__name__)

BASE_METHODS = ("zero_shot", "profile_prompt")
TRAIN_METHODS = ("local_real", "cdcda")
METHODS = BASE_METHODS + TRAIN_METHODS

# seeds by user -> (synthetic items by user, counts by user)
Augmenter = Callable[[Mapping[str, list[dict]]], tuple[dict[str, list[dict]], dict[str, dict]]]
Progress = Callable[[str, int, int], None]


class ArraysInReply(RuntimeError):
    """A device replied with arrays: weights must never leave the device."""


@dataclass
class MethodResult:
    per_user: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def metrics(self, names: Iterable[str]) -> dict[str, float]:
        """Mean over users of every metric, plus spread of the task metrics."""
        out: dict[str, float] = {}
        if not self.per_user:
            return out
        keys = sorted({k for m in self.per_user.values() for k in m})
        for k in keys:
            vals = [m[k] for m in self.per_user.values() if k in m]
            out[k] = sum(vals) / len(vals)
        for k in names:
            vals = sorted(m[k] for m in self.per_user.values() if k in m)
            if vals:
                out[f"{k}_median"] = statistics.median(vals)
                out[f"{k}_min"], out[f"{k}_max"] = vals[0], vals[-1]
        out["users"] = len(self.per_user)
        out["failures"] = len(self.failures)
        return out


class AugmentationStrategy:
    """Runs each method over the sampled users and keeps only metrics."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path, augmenter: Augmenter,
                 ledger: Ledger, timeout: float, sample: int = 0, seed: int = 0,
                 progress: Progress | None = None):
        self.request = dict(request)  # the ConfigRecord every message carries
        self.run_dir = Path(run_dir)
        self.augmenter = augmenter
        self.ledger = ledger
        self.timeout = timeout
        self.sample = sample
        self.seed = seed
        self.progress = progress or (lambda m, d, t: None)
        self.node_user: dict[int, str] = {}
        self.augment_counts: dict[str, dict] = {}

    # --- plumbing ------------------------------------------------------------------------
    def _message(self, node: int, kind: str, method: str, synthetic: list[dict] | None = None):
        content = RecordDict({"config": ConfigRecord({**self.request, "method": method})})
        if synthetic is not None:
            content["synthetic"] = ConfigRecord({"items": json.dumps(synthetic)})
        return Message(content=content, dst_node_id=node, message_type=kind)

    def _exchange(self, grid: Grid, messages: list[Message], method: str,
                  on_reply: Callable[[int, Message], None]) -> dict[int, str]:
        """Push messages, pull replies as they come (each handled at once), until timeout.

        Returns failures by node: error replies, replies carrying arrays, and timeouts.
        """
        sent: dict[str, tuple[int, str]] = {}
        for msg in messages:
            user = self.node_user.get(msg.metadata.dst_node_id)
            self.ledger.add_message(method, msg.metadata.message_type, "down", msg.content, user)
        for mid, msg in zip(grid.push_messages(messages), messages):
            sent[mid] = (msg.metadata.dst_node_id, msg.metadata.message_type)
        failures: dict[int, str] = {}
        total, done = len(sent), 0
        deadline = time.time() + self.timeout
        while sent and time.time() < deadline:
            replies = list(grid.pull_messages(list(sent)))
            for reply in replies:
                node, kind = sent.pop(reply.metadata.reply_to_message_id)
                done += 1
                if reply.has_error():
                    failures[node] = f"{reply.error.code}: {reply.error.reason}"
                    log.warning("node %s failed %s: %s", node, kind, reply.error.reason)
                    continue
                try:
                    user = str(reply.content["meta"]["user-id"])
                except (KeyError, TypeError):
                    failures[node] = "bad reply: no meta record with a user-id"
                    log.warning("node %s: %s reply without meta/user-id", node, kind)
                    continue
                self.node_user[node] = user
                self.ledger.add_message(method, kind, "up", reply.content, user)
                if reply.content.array_records:
                    failures[node] = "rejected: reply carries arrays (weights never leave)"
                    log.error("node %s (%s) sent arrays in a %s reply: rejected", node, user, kind)
                    continue
                try:
                    on_reply(node, reply)
                except Exception as err:  # a garbage reply must not end the run
                    failures[node] = f"bad reply: {err}"
                    log.warning("node %s: bad %s reply: %s", node, kind, err)
            self.progress(method, done, total)
            if sent and not replies:
                time.sleep(0.05)
        for node, kind in sent.values():
            failures[node] = f"timeout after {self.timeout:.0f} s"
            log.warning("node %s: no %s reply in %.0f s", node, kind, self.timeout)
        return failures

    def _result_path(self, method: str, user: str) -> Path:
        return self.run_dir / "results" / method / f"{user}.json"

    def _store(self, method: str, user: str, metrics: dict) -> None:
        write_json(self._result_path(method, user), metrics)

    # --- phases --------------------------------------------------------------------------
    def wait_for_nodes(self, grid: Grid, expected: int, settle: float = 5.0,
                       max_wait: float = 60.0) -> list[int]:
        """SuperNodes register asynchronously: wait for `expected` of them, or until their
        number has not changed for `settle` seconds (a smaller federation), at most max_wait."""
        start = last_change = time.time()
        nodes: list[int] = []
        while True:
            now_nodes = sorted(grid.get_node_ids())
            if len(now_nodes) != len(nodes):
                nodes, last_change = now_nodes, time.time()
            if len(nodes) >= expected or time.time() - start > max_wait or (
                    nodes and time.time() - last_change > settle):
                return nodes
            time.sleep(0.1)

    def discover(self, grid: Grid, expected: int = 0) -> dict[int, str]:
        """Learn which user each SuperNode holds (one tiny query per node)."""
        nodes = self.wait_for_nodes(grid, expected) if expected else sorted(grid.get_node_ids())
        if expected and len(nodes) != expected:
            log.warning("%d SuperNodes for experiment.users = %d", len(nodes), expected)
        msgs = [self._message(n, "query.user", "setup") for n in nodes]
        self._exchange(grid, msgs, "setup", lambda node, reply: None)
        users = sorted(self.node_user.items(), key=lambda kv: kv[1])
        if self.sample and self.sample < len(users):
            picked = random.Random(self.seed).sample(users, self.sample)
            users = sorted(picked, key=lambda kv: kv[1])
        self.node_user = dict(users)
        log.info("%d devices answered; %d users sampled", len(nodes), len(users))
        return self.node_user

    def _pending(self, method: str, result: MethodResult) -> list[int]:
        """Nodes whose user has no stored result for this method (resume skips the rest)."""
        todo = []
        for node, user in self.node_user.items():
            path = self._result_path(method, user)
            if path.exists():
                result.per_user[user] = json.loads(path.read_text())
            else:
                todo.append(node)
        if len(todo) < len(self.node_user):
            log.info("%s: %d users already done, %d to go", method,
                     len(self.node_user) - len(todo), len(todo))
        return todo

    def _collect(self, method: str, result: MethodResult):
        def on_reply(node: int, reply: Message) -> None:
            user = self.node_user[node]
            metrics = {k: float(v) for k, v in reply.content["metrics"].items()}
            self._store(method, user, metrics)
            result.per_user[user] = metrics
        return on_reply

    def run_method(self, grid: Grid, method: str) -> MethodResult:
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}': use {', '.join(METHODS)}")
        start = time.perf_counter()
        result = MethodResult()
        todo = self._pending(method, result)
        if todo:
            synthetic = self._synthesise(grid, todo) if method == "cdcda" else {}
            kind = "evaluate" if method in BASE_METHODS else "train"
            msgs = [
                self._message(n, kind, method,
                              synthetic.get(self.node_user[n]) if method == "cdcda" else None)
                for n in todo if method != "cdcda" or self.node_user[n] in synthetic
            ]
            failures = self._exchange(grid, msgs, method, self._collect(method, result))
            result.failures.update({self.node_user.get(n, str(n)): why
                                    for n, why in failures.items()})
        result.seconds = time.perf_counter() - start
        return result

    def _synthesise(self, grid: Grid, nodes: list[int]) -> dict[str, list[dict]]:
        """Seed round + cloud augmentation, cached per user so a resumed run reuses it."""
        synthetic: dict[str, list[dict]] = {}
        missing = []
        for n in nodes:
            path = self.run_dir / "synthetic" / f"{self.node_user[n]}.json"
            if path.exists():
                cached = json.loads(path.read_text())
                synthetic[self.node_user[n]] = cached["items"]
                self.augment_counts[self.node_user[n]] = cached["counts"]
            else:
                missing.append(n)
        if not missing:
            return synthetic
        seeds: dict[str, list[dict]] = {}

        def on_seeds(node: int, reply: Message) -> None:
            seeds[self.node_user[node]] = json.loads(str(reply.content["meta"]["items"]))

        msgs = [self._message(n, "query.seeds", "cdcda") for n in missing]
        failures = self._exchange(grid, msgs, "cdcda", on_seeds)
        for node, why in failures.items():
            log.warning("no seeds from %s: %s", self.node_user.get(node, node), why)
        items, counts = self.augmenter(seeds)
        for user, kept in items.items():
            write_json(self.run_dir / "synthetic" / f"{user}.json",
                       {"seeds": seeds[user], "items": kept, "counts": counts[user]})
            synthetic[user] = kept
            self.augment_counts[user] = counts[user]
        return synthetic
