"""fedavg_lora: FlowerTune-style federated LoRA. Each of `fedavg.rounds` rounds, a
`fraction` of users trains the global adapter on its real data and returns it; Flower's own
FedAvg aggregation (`aggregate_arrayrecords`, weighted by `num-examples`) averages them.
Each device then evaluates the final global adapter. The only method whose replies may
carry arrays. The global state is kept in `DIR/shared/fedavg_lora/` round by round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.accounting import Cohort, Exchange, charged, record_bytes
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
    init = init or method
    where = folder(s, method)
    state = load_stored(where / "state.json") or {}
    done = int(state.get("rounds_done", 0))
    adapter = load_arrays(where / "global.npz") if done else None
    if adapter is None:
        adopted = adopt_rounds(s, method, attempt, init, cfg)
        if adopted is not None:
            return adopted
        done, adapter = 0, s.services.initial_adapter(init)
    # rounds stored before "complete" was recorded may have lost participants: not adopted
    complete = bool(state.get("complete", False)) if done else True
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
        complete = complete and len(replies) == len(picked)
        save_arrays(where / "global.npz", adapter)
        state = {**state, "rounds_done": rnd + 1, "rounds": cfg.rounds, "init": init,
                 "settings": _settings(s, cfg), "users": _digest(everyone),
                 "complete": complete, f"round_{rnd + 1}_participants": len(replies)}
        write_json(where / "state.json", state)
        if s.should_stop():
            raise RunStopped(f"stopped after {method} round {rnd + 1}")
    return adapter


def adopt_rounds(s: Coordinator, method: str, attempt: int, init: str,
                 cfg: FedAvgSettings) -> ArrayRecord | None:
    """Another method's finished FedAvg rounds, taken as this method's own when they are
    the same rounds: the same initial adapter (`init`), settings and users, every
    participant averaged in every round, and no injected device faults (a fault is drawn
    per method, so this method's own rounds could fail elsewhere). fedavg_ft's rounds are
    fedavg_lora's, so a run with both trains them once.

    The rounds' traffic is charged to this method as it would have crossed the network:
    each user's request as this method would have sent it (its name is in the config),
    the reply as the other method got it but for the name in its meta. None when no
    method's rounds qualify.
    """
    faults = json.loads(str(s.request.get("faults", "{}")) or "{}")
    if any(float(faults.get(k, 0) or 0) > 0 for k in ("crash", "hang", "garbage", "die")):
        return None
    shared = s.run_dir / "shared"
    others = sorted(p.name for p in shared.iterdir() if p.is_dir()) if shared.is_dir() else []
    for other in others:
        if other == method:
            continue
        state = load_stored(folder(s, other) / "state.json") or {}
        if (state.get("init") != init or state.get("settings") != _settings(s, cfg)
                or state.get("rounds_done") != cfg.rounds or not state.get("complete")
                or state.get("users") != _digest(s.users)):
            continue
        adapter = load_arrays(folder(s, other) / "global.npz")
        if adapter is None:
            continue
        _charge_rounds(s, method, other, attempt, adapter, cfg)
        where = folder(s, method)
        save_arrays(where / "global.npz", adapter)
        write_json(where / "state.json", {**state, "adopted_from": other})
        log.info("%s: FedAvg's %d rounds are %s's (same initial adapter, settings and "
                 "users): taken from it, not trained again", method, cfg.rounds, other)
        return adapter
    return None


def _digest(users: list[str]) -> str:
    return hashlib.sha256("\n".join(users).encode()).hexdigest()[:16]


def _settings(s: Coordinator, cfg: FedAvgSettings) -> dict:
    """What decides the rounds besides the initial adapter and the users."""
    return {**asdict(cfg), "seed": s.settings.seed}


def _charge_rounds(s: Coordinator, method: str, other: str, attempt: int,
                   adapter: ArrayRecord, cfg: FedAvgSettings) -> None:
    """Charge `method` the rounds `other` ran: its replies' bytes, this method's requests.

    An array's wire size depends on its shape only, so the final adapter weighs what each
    round's did. Entries already charged (a resume after a kill mid-way) are not repeated.
    """
    trained = [e for e in charged(s.ledger.entries) if e["kind"] == "train"]
    mine = {(e["user"], e.get("round", 0)) for e in trained if e["method"] == method}
    for rnd in range(cfg.rounds):
        taken = [e for e in trained if e["method"] == other and e.get("round", 0) == rnd]
        users = sorted({e["user"] for e in taken})
        views = {}
        for msg in s.messages(users, "train", method, attempt, records={"arrays": adapter},
                              **{"local-steps": cfg.local_steps, "round": rnd}):
            cohort = Cohort(msg.content)
            for user in json.loads(str(msg.content["config"]["users"])):
                views[user] = cohort.view_bytes(user)
        for e in taken:
            if (e["user"], rnd) in mine:
                continue
            down, records_down = views[e["user"]]
            records_up = dict(e.get("records_up", {}))
            if records_up.get("meta") == _meta_bytes(e["user"], other):
                records_up["meta"] = _meta_bytes(e["user"], method)
            s.ledger.record(Exchange(method, "train", e["user"], e.get("outcome", "ok"),
                                     down, sum(records_up.values()), records_down,
                                     records_up, e.get("fields_up", {}),
                                     round=rnd, attempt=attempt))


def _meta_bytes(user: str, method: str) -> int:
    """A train reply's meta record as the device writes it (clients/methods/fedavg_lora.py:
    the user and the method's name), so a taken-over reply is charged with this method's
    name in it: the one thing that differs between the two methods' replies."""
    return record_bytes(RecordDict({"meta": ConfigRecord({"user-id": user,
                                                          "method": method})}))["meta"]


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    adapter = train_global(s, grid, method, attempt)
    return evaluate_with(s, grid, method, users, attempt, adapter, result)


METHOD = Method(
    name="fedavg_lora", run=run, kinds=("train", "evaluate"),
    traffic="the adapter down and up every round, down once more to evaluate",
    trains="global", trainer="cohort", arrays_up=frozenset({"train"}),
    round_kinds=("train",), rounds=lambda cfg: cfg.fedavg.rounds)
