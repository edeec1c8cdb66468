"""The shared baselines cdcda is compared with, on the same users and held-out queries.

- `shared_lora`: every user's real examples go up; one LoRA is trained on the pool
  (centralised, not private) and sent down to every device, which evaluates it.
- `fedavg_lora`: FlowerTune-style federated LoRA: `fedavg.rounds` rounds, a `fraction` of
  users per round trains the global adapter on its real data and returns it; Flower's
  own FedAvg aggregation (`aggregate_arrayrecords`, weighted by `num-examples`) averages
  them. The only method whose replies may carry arrays.
- `cloud`: the cloud LLM answers each user's queries itself, with profile prompting; the
  prompts go up, the answers come down, the device scores them against its own golds.

The server-side work (training on the pool, the initial adapter, the cloud's answers) is
done by `Services` the experiment provides, so this module stays free of model code.
Whatever costs a lot is cached in `DIR/shared/<method>/`, so a resumed run reuses it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.cdcda import AugmentationStrategy, MethodResult
from strategies.exchange import RunStopped
from strategies.replies import Items, View, parse_items, reply_metrics
from tasks.files import load_stored, write_json
from tasks.structured import check

log = logging.getLogger(__name__)


@dataclass
class FedAvgSettings:
    rounds: int = field(default=2, metadata={"help": "federated rounds"})
    fraction: float = field(default=1.0, metadata={"help": "share of users per round"})
    local_steps: int = field(default=4, metadata={
        "help": "optimiser steps each participant takes per round (device.train otherwise)"})

    def __post_init__(self) -> None:
        check(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        check(0 < self.fraction <= 1, "fraction", f"must be in (0, 1], got {self.fraction}")
        check(self.local_steps >= 0, "local_steps", "must be >= 0")


@dataclass
class Services:
    """Server-side work for the shared baselines, provided by the experiment."""

    train_pooled: Callable[[dict[str, list[dict]]], ArrayRecord]  # shared_lora
    initial_adapter: Callable[[], ArrayRecord]  # fedavg_lora's round-0 global adapter
    answer: Callable[[list[str]], list]  # cloud: str or a CloudError per prompt
    fedavg: FedAvgSettings = field(default_factory=FedAvgSettings)


def _folder(s: AugmentationStrategy, method: str) -> Path:
    return s.run_dir / "shared" / method


def save_arrays(path: Path, record: ArrayRecord) -> None:
    """An ArrayRecord as .npz, written atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, **{k: v.numpy() for k, v in record.items()})
    tmp.replace(path)


def load_arrays(path: Path) -> ArrayRecord | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return ArrayRecord({k: Array(np.asarray(data[k])) for k in data.files})
    except (OSError, ValueError) as err:  # corrupt: recompute, keep the file for a look
        log.warning("stored adapter %s is unreadable (%s): moved aside, recomputed", path, err)
        path.replace(path.with_name(path.name + ".corrupt"))
        return None


def _metrics(view: View) -> dict[str, float]:
    return reply_metrics(view.content)


def _evaluate_with(s: AugmentationStrategy, grid: Grid, method: str, users: list[str],
                   attempt: int, adapter: ArrayRecord, result: MethodResult) -> dict[str, str]:
    """Send the shared adapter down to each device, which evaluates it on its queries
    (one copy per SuperNode, shared by its users; each user is charged a copy)."""
    msgs = s._messages(users, "evaluate", method, attempt, records={"arrays": adapter})
    return s._exchange(grid, msgs, method, attempt, _metrics,
                       lambda view, m: s._store(method, view.user, m, result))


def run_shared_lora(s: AugmentationStrategy, grid: Grid, method: str, users: list[str],
                    attempt: int, result: MethodResult) -> dict[str, str]:
    path = _folder(s, method) / "adapter.npz"
    adapter = load_arrays(path)
    failed: dict[str, str] = {}
    if adapter is None:
        pooled: dict[str, list[dict]] = {}
        everyone = s.users  # the pool is every user's data, done or not
        msgs = s._messages(everyone, "query.data", method, attempt)
        failed.update(s._exchange(grid, msgs, method, attempt, parse_items,
                                  lambda view, got: pooled.__setitem__(view.user, got.items)))
        if not pooled:
            return failed
        if s.should_stop():
            raise RunStopped("stopped before training the shared adapter")
        log.info("%s: training one adapter on %d examples of %d users", method,
                 sum(map(len, pooled.values())), len(pooled))
        adapter = s.services.train_pooled(pooled)
        save_arrays(path, adapter)
        write_json(_folder(s, method) / "pool.json",
                   {"users": sorted(pooled), "examples": sum(map(len, pooled.values()))})
    failed.update(_evaluate_with(s, grid, method, users, attempt, adapter, result))
    return failed


def run_fedavg_lora(s: AugmentationStrategy, grid: Grid, method: str, users: list[str],
                    attempt: int, result: MethodResult) -> dict[str, str]:
    cfg = s.services.fedavg
    folder = _folder(s, method)
    state = load_stored(folder / "state.json") or {}
    done = int(state.get("rounds_done", 0))
    adapter = load_arrays(folder / "global.npz") if done else None
    if adapter is None:
        done, adapter = 0, s.services.initial_adapter()
    everyone = s.users
    failed: dict[str, str] = {}
    for rnd in range(done, cfg.rounds):
        k = max(1, round(cfg.fraction * len(everyone)))
        picked = sorted(random.Random(f"{s.settings.seed}/fedavg/{rnd}").sample(everyone, k))
        replies: dict[str, RecordDict] = {}

        def commit(view: View, content: RecordDict, replies=replies) -> None:
            replies[view.user] = content

        def parse(view: View) -> RecordDict:
            if "arrays" not in view.content:
                raise ValueError("a fedavg_lora train reply must carry the adapter 'arrays'")
            if reply_metrics(view.content).get("num-examples", 0) <= 0:
                raise ValueError("no num-examples to weight the average with")
            return view.content

        msgs = s._messages(picked, "train", method, attempt, records={"arrays": adapter},
                           **{"local-steps": cfg.local_steps, "round": rnd})
        round_failed = s._exchange(grid, msgs, method, attempt, parse, commit,
                                   arrays_allowed=True)
        if replies:  # Flower's FedAvg: the example-weighted mean of the clients' adapters,
            # summed in user order (not arrival order) so a rerun gives the same bits
            adapter = aggregate_arrayrecords(
                [RecordDict({"arrays": replies[u]["arrays"], "metrics": replies[u]["metrics"]})
                 for u in sorted(replies)], "num-examples")
        log.info("%s round %d: %d of %d participants averaged", method, rnd + 1,
                 len(replies), len(picked))
        for user, why in round_failed.items():
            log.info("%s round %d: %s failed: %s", method, rnd + 1, user, why)
        save_arrays(folder / "global.npz", adapter)
        write_json(folder / "state.json", {"rounds_done": rnd + 1, "rounds": cfg.rounds,
                                           f"round_{rnd + 1}_participants": len(replies)})
        if s.should_stop():
            raise RunStopped(f"stopped after {method} round {rnd + 1}")
    failed.update(_evaluate_with(s, grid, method, users, attempt, adapter, result))
    return failed


def run_cloud(s: AugmentationStrategy, grid: Grid, method: str, users: list[str],
              attempt: int, result: MethodResult) -> dict[str, str]:
    prompts: dict[str, list[str]] = {}

    def commit(view: View, got: Items) -> None:
        prompts[view.user] = got.items

    def parse(view: View) -> Items:
        items = json.loads(str(view.content["meta"]["items"]))
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise ValueError("prompts are not a list of strings")
        return Items(items, {"prompt": sum(len(p.encode()) for p in items)})

    msgs = s._messages(users, "query.prompts", method, attempt)
    failed = s._exchange(grid, msgs, method, attempt, parse, commit)
    asked = sorted(prompts)
    flat = [p for u in asked for p in prompts[u]]
    answers = s.services.answer(flat) if flat else []
    by_user: dict[str, list] = {}
    i = 0
    for u in asked:
        by_user[u] = answers[i: i + len(prompts[u])]
        i += len(prompts[u])
    send = []
    for u in users:
        if u not in by_user:
            continue
        errors: dict[str, int] = {}
        for a in by_user[u]:
            if not isinstance(a, str):
                errors[a.cause] = errors.get(a.cause, 0) + 1
        if errors:
            s._cloud_failed(method, u, "answers", errors, attempt, failed)
            continue
        send.append(u)
    msgs = s._messages(send, "evaluate", method, attempt, lambda u: {
        "answers": ConfigRecord({"items": json.dumps(by_user[u])})})
    if msgs:
        failed.update(s._exchange(grid, msgs, method, attempt, _metrics,
                                  lambda view, m: s._store(method, view.user, m, result)))
    return failed


RUNNERS = {"shared_lora": run_shared_lora, "fedavg_lora": run_fedavg_lora, "cloud": run_cloud}
