"""cdcda_active: augmentation in rounds, each aimed where the device is still weak.

Round 0 is cdcda's: seeds up, synthetic examples down, training. After each round the
device sends a privacy-light weakness signal: its loss on each of its own seeds (k
numbers; the seeds already went up in round 0, the held-out queries are never touched).
The cloud writes the next round's examples from the seeds the device fits worst, and the
device goes on training its adapter. The budget is cdcda's: `augment.n` candidates and
`device.train.steps` steps in all, split over `augment.rounds`.

Each user's progress is kept in `DIR/active/<user>.json` (its seeds, each round's
synthetic data, filter counts and signal), so a resumed run goes on from the round it was
in; the device keeps each round's adapter (`adapters-cdcda_active-rounds/<user>/<r>/`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult, node_names
from strategies.methods.cdcda import _seeds
from strategies.replies import BadReply, View, reply_metrics
from tasks.files import load_stored, write_json
from tasks.structured import check

FOLDER = "active"  # DIR/active/<user>.json
ROUNDS_FILE = "rounds.json"  # DIR/active/rounds.json: the cloud's time per round
log = logging.getLogger(__name__)


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    rounds = int(getattr(s.settings, "rounds", 2))
    failed: dict[str, str] = {}
    state = {u: load_stored(_path(s, u)) or {"rounds": []} for u in users}
    missing = [u for u in users if "seeds" not in state[u]]
    if missing:
        for user, seeds in _seeds(s, grid, method, missing, attempt, failed).items():
            state[user]["seeds"] = seeds
            write_json(_path(s, user), state[user])
    live = [u for u in users if "seeds" in state[u]]
    for r in range(rounds):
        todo = [u for u in live if u not in failed and state[u].get("done", 0) <= r]
        if todo:
            _augment(s, method, r, rounds, todo, state, attempt, failed)
            _train(s, grid, method, r, rounds, [u for u in todo if u not in failed], state,
                   attempt, failed, result)
        if s.should_stop():
            raise RunStopped(f"stopped after {method} round {r + 1}")
    return failed


def _path(s: Coordinator, user: str):
    return s.run_dir / FOLDER / f"{user}.json"


def weakest(seeds: list[dict], signal: list[float]) -> list[dict]:
    """The half of a user's seeds (at least one) on which its device's loss is highest."""
    if not seeds or len(signal) != len(seeds):
        return seeds
    order = sorted(range(len(seeds)), key=lambda i: -signal[i])
    return [seeds[i] for i in sorted(order[: max(1, math.ceil(len(seeds) / 2))])]


def _augment(s: Coordinator, method: str, r: int, rounds: int, todo: list[str],
             state: dict[str, dict], attempt: int, failed: dict[str, str]) -> None:
    """Round r's synthetic data for the users that lack it: round 0 from all seeds, later
    rounds from the weakest seeds of the round before."""
    need = [u for u in todo if len(state[u]["rounds"]) <= r]
    if not need:
        return
    seeds = {u: state[u]["seeds"] for u in need}
    focus = {u: weakest(seeds[u], state[u]["rounds"][r - 1].get("signal", []))
             for u in need} if r else None
    start = time.perf_counter()
    items, counts, errors = s.augmenter(seeds, attempt, focus, (r, rounds),
                                        nodes=node_names(s, seeds))
    _cloud_time(s, r, time.perf_counter() - start, len(need),
                sum(c.get("generated", 0) for c in counts.values()))
    for user, kept in items.items():
        entry = {"items": kept, "counts": counts[user]}
        if focus:
            entry["focus"] = [seeds[user].index(x) for x in focus[user]]
        state[user]["rounds"].append(entry)
        write_json(_path(s, user), state[user])
    if s.should_stop():
        raise RunStopped(f"stopped during {method} round {r + 1}'s augmentation")
    for user, causes in errors.items():
        s.cloud_failed(method, user, "augmentation", causes, attempt, failed)


def _cloud_time(s: Coordinator, r: int, seconds: float, users: int, generated: int) -> None:
    """The cloud's time per round, summed over attempts and sessions (DIR/active/rounds.json)."""
    path = s.run_dir / FOLDER / ROUNDS_FILE
    stored = (load_stored(path) or {}).get("rounds", {})
    mine = stored.get(str(r), {"cloud_seconds": 0.0, "users": 0, "generated": 0})
    stored[str(r)] = {"cloud_seconds": mine["cloud_seconds"] + seconds,
                      "users": mine["users"] + users, "generated": mine["generated"] + generated}
    write_json(path, {"rounds": stored})
    log.info("cdcda_active round %d: the cloud wrote %d candidates for %d users in %.1f s",
             r + 1, generated, users, seconds)


def _train(s: Coordinator, grid: Grid, method: str, r: int, rounds: int, ready: list[str],
           state: dict[str, dict], attempt: int, failed: dict[str, str],
           result: MethodResult) -> None:
    """Round r's training: each device goes on from its round r - 1 adapter with this
    round's examples added; it replies its loss per seed (and, last round, its metrics)."""

    def own(user: str) -> dict:
        items = state[user]["rounds"][r]["items"]
        return {"synthetic": ConfigRecord({"items": json.dumps(items)})}

    def parse(view: View) -> tuple[dict[str, float], list[float]]:
        metrics = reply_metrics(view.content)
        try:
            signal = json.loads(str(view.content["meta"]["signal"]))
        except (KeyError, TypeError, ValueError):
            raise BadReply("no weakness signal ('signal': a loss per seed)") from None
        seeds = state[view.user]["seeds"]
        if not isinstance(signal, list) or len(signal) != len(seeds) or not all(
                isinstance(x, int | float) and math.isfinite(x) and x >= 0 for x in signal):
            raise BadReply(f"the signal must be {len(seeds)} finite losses >= 0, one per seed")
        return metrics, [float(x) for x in signal]

    def commit(view: View, got: tuple[dict[str, float], list[float]]) -> None:
        metrics, signal = got
        mine = state[view.user]
        mine["rounds"][r]["signal"] = signal
        if r == rounds - 1:  # the result first: a user stored is never trained again
            metrics["active-rounds"] = float(rounds)
            s.store(method, view.user, metrics, result)
        mine["done"] = r + 1
        write_json(_path(s, view.user), mine)

    msgs = s.messages(ready, "train.round", method, attempt, own, round=r, rounds=rounds)
    if msgs:
        failed.update(s.exchange(grid, msgs, method, attempt, parse, commit))


def counts(run_dir: Path, user: str) -> dict | None:
    """A user's filter counts summed over its rounds so far."""
    stored = load_stored(run_dir / FOLDER / f"{user}.json")
    rounds = [r["counts"] for r in (stored or {}).get("rounds", [])
              if isinstance(r, dict) and isinstance(r.get("counts"), dict)]
    if not rounds:
        return None
    total: dict = {}
    for c in rounds:  # every key kept, zeros too (a Counter sum would drop them)
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def check_config(cfg) -> None:
    check(cfg.device.train.steps >= cfg.augment.rounds, "device.train.steps",
          f"must be >= augment.rounds = {cfg.augment.rounds} for cdcda_active: its steps "
          "are split over the rounds, at least one each (0 = epochs is not a fixed budget)")
    check(cfg.augment.n >= cfg.augment.rounds, "augment.n",
          f"must be >= augment.rounds = {cfg.augment.rounds} for cdcda_active (candidates "
          "per round)")


METHOD = Method(
    name="cdcda_active", run=run, kinds=("query.seeds", "train.round"),
    traffic="seeds up, synthetic down each round, a loss per seed up each round",
    trains="own", trainer="cohort", uses_cloud=True, augments=True,
    round_kinds=("train.round",), rounds=lambda cfg: cfg.augment.rounds, counts=counts,
    check_config=check_config, default=False)
