"""fedavg_lora: FlowerTune-style federated LoRA. Each of `fedavg.rounds` rounds, a
`fraction` of users trains the global adapter on its real data and returns it; Flower's own
FedAvg aggregation (`aggregate_arrayrecords`, weighted by `num-examples`) averages them.
Each device then evaluates the final global adapter. The only method whose replies may
carry arrays. The global state is kept in `DIR/shared/fedavg_lora/` round by round.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult
from strategies.methods.shared_adapter import evaluate_with, folder, load_arrays, save_arrays
from strategies.replies import NonFinite, View, reply_metrics
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


def train_global(s: Coordinator, grid: Grid, method: str, attempt: int,
                 init: str | None = None) -> ArrayRecord:
    """FedAvg's rounds (those not stored yet): the global adapter after the last one.

    Round 0 starts from a fresh adapter seeded by `init` (default: the method's name), so
    two methods with the same `init` train the same global adapter.
    """
    cfg = s.services.fedavg or FedAvgSettings()
    where = folder(s, method)
    state = load_stored(where / "state.json") or {}
    done = int(state.get("rounds_done", 0))
    adapter = load_arrays(where / "global.npz") if done else None
    if adapter is None:
        done, adapter = 0, s.services.initial_adapter(init or method)
    everyone = s.users
    for rnd in range(done, cfg.rounds):
        k = max(1, round(cfg.fraction * len(everyone)))
        picked = sorted(random.Random(f"{s.settings.seed}/fedavg/{rnd}").sample(everyone, k))
        replies: dict[str, RecordDict] = {}

        def commit(view: View, content: RecordDict, replies=replies) -> None:
            replies[view.user] = content

        def parse(view: View) -> RecordDict:
            if "arrays" not in view.content:
                raise ValueError(f"a {method} train reply must carry the adapter 'arrays'")
            if reply_metrics(view.content).get("num-examples", 0) <= 0:
                raise ValueError("no num-examples to weight the average with")
            if not all(np.isfinite(a.numpy()).all() for a in view.content["arrays"].values()):
                raise NonFinite("the returned adapter holds NaN or inf: left out of the mean")
            return view.content

        msgs = s.messages(picked, "train", method, attempt, records={"arrays": adapter},
                          **{"local-steps": cfg.local_steps, "round": rnd})
        round_failed = s.exchange(grid, msgs, method, attempt, parse, commit)
        if replies:  # Flower's FedAvg: the example-weighted mean of the clients' adapters,
            # summed in user order (not arrival order) so a rerun gives the same bits
            adapter = aggregate_arrayrecords(
                [RecordDict({"arrays": replies[u]["arrays"], "metrics": replies[u]["metrics"]})
                 for u in sorted(replies)], "num-examples")
        log.info("%s round %d: %d of %d participants averaged", method, rnd + 1,
                 len(replies), len(picked))
        for user, why in round_failed.items():
            log.info("%s round %d: %s failed: %s", method, rnd + 1, user, why)
        save_arrays(where / "global.npz", adapter)
        write_json(where / "state.json", {"rounds_done": rnd + 1, "rounds": cfg.rounds,
                                          f"round_{rnd + 1}_participants": len(replies)})
        if s.should_stop():
            raise RunStopped(f"stopped after {method} round {rnd + 1}")
    return adapter


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    adapter = train_global(s, grid, method, attempt)
    return evaluate_with(s, grid, method, users, attempt, adapter, result)


METHOD = Method(
    name="fedavg_lora", run=run, kinds=("train", "evaluate"),
    traffic="the adapter down and up every round, down once more to evaluate",
    trains="global", trainer="cohort", arrays_up=frozenset({"train"}),
    round_kinds=("train",), rounds=lambda cfg: cfg.fedavg.rounds)
